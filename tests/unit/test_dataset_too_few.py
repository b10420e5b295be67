"""Too few usable images in a class or split fails with the split, the class and the counts,
before any library sees the labels (issue: a lone unreadable malignant file once surfaced as
scikit-learn's 'least populated class' error)."""

import io

import numpy as np
import pytest
from PIL import Image

from components.core.data import dataset


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


def layout(root, train_benign=12, train_malignant: list[bytes] = (), test=(1, 1)):
    for split, cls, blobs in (
        ("train", "benign", [jpeg(i) for i in range(train_benign)]),
        ("train", "malignant", list(train_malignant)),
        ("test", "benign", [jpeg(100 + i) for i in range(test[0])]),
        ("test", "malignant", [jpeg(200 + i) for i in range(test[1])]),
    ):
        folder = root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i, blob in enumerate(blobs):
            (folder / f"{i}.jpg").write_bytes(blob)
    return root


def run(root, tmp_path):
    return dataset.preprocess(
        str(root),
        {s: str(tmp_path / "out" / s) for s in dataset.OUTPUT_SPLITS},
        image_size=16,
        val_fraction=0.25,
        max_bad_fraction=0.5,
    )


def test_a_class_whose_only_file_is_unreadable(tmp_path):
    root = layout(tmp_path / "raw", train_malignant=[b"not a jpeg"])
    with pytest.raises(dataset.DataError) as info:
        run(root, tmp_path)
    message = str(info.value)
    assert message.startswith(f"{root / 'train' / 'malignant'}: no usable image for the ")
    assert "(1 file(s) assigned to it, 1 unreadable, 0 usable)" in message
    assert "least populated" not in message
    assert not (tmp_path / "out" / "train").exists()  # nothing that looks finished


def test_a_class_with_one_good_image_cannot_fill_validation(tmp_path):
    root = layout(tmp_path / "raw", train_malignant=[jpeg(50)])
    with pytest.raises(
        dataset.DataError,
        match=r"train/malignant: no usable image for the (val|train) split "
        r"\(0 file\(s\) assigned to it, 0 unreadable, 0 usable\); add",
    ):
        run(root, tmp_path)


def test_an_empty_class_folder(tmp_path):
    root = layout(tmp_path / "raw", train_malignant=[])
    (root / "train" / "malignant").mkdir(exist_ok=True)
    (root / "train" / "malignant" / "README.txt").write_text("no images yet")
    with pytest.raises(dataset.DataError, match=r"train/malignant: no image files in this class"):
        run(root, tmp_path)
