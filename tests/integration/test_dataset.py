"""Preprocessing: labels, split, uint8 arrays, bad files, layout errors, S3 == local."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.core.data import dataset

SPLITS = dataset.OUTPUT_SPLITS
COLOURS = {"benign": (30, 60, 220), "malignant": (220, 40, 30)}  # blue = 0, red = 1


def make_raw(root: Path, train: int = 10, test: int = 4, fmt: str = "JPEG") -> Path:
    for split, n in (("train", train), ("test", test)):
        for cls, colour in COLOURS.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = Image.new("RGB", (40, 40), colour)
                img.putpixel((0, 0), (i, 0 if split == "train" else 128, 0))  # unique bytes: copies would be leakage
                img.save(folder / f"{i}.{'jpg' if fmt == 'JPEG' else 'png'}", fmt)
    return root


def run(raw, out, **kw):
    return dataset.preprocess(str(raw), {s: str(out / s) for s in SPLITS}, image_size=16, **kw)


def test_labels_benign_0_malignant_1_match_the_pixels(tmp_path):
    run(make_raw(tmp_path / "raw"), tmp_path / "out", val_fraction=0.2)
    for s in SPLITS:
        split = dataset.SplitArrays(str(tmp_path / "out" / s))
        images = split.images()
        assert images.dtype == np.uint8 and images.shape[1:] == (16, 16, 3)
        red = images[:, 8, 8, 0] > images[:, 8, 8, 2]
        assert np.array_equal(split.labels, red.astype(np.uint8)), s
        assert set(split.labels) == {0, 1}


def test_hash_split_and_counts(tmp_path):
    raw = make_raw(tmp_path / "raw", train=20, test=5)
    a = run(raw, tmp_path / "a", val_fraction=0.25, seed=7)
    # Each image's side is its key's hash (tests/unit/test_dataset_split.py): the expected counts follow.
    listed = [i for i in dataset.scan_raw(str(raw)).images if i.split == "train"]
    _, val = dataset.hash_split(listed, 0.25, seed=7)
    val_counts = {c: sum(i.label == n for i in val) for n, c in enumerate(dataset.CLASSES)}
    assert a.splits["val"]["class_counts"] == val_counts and all(1 <= v <= 10 for v in val_counts.values())
    assert a.splits["train"]["class_counts"] == {c: 20 - v for c, v in val_counts.items()}
    assert a.splits["test"]["class_counts"] == {"benign": 5, "malignant": 5}
    run(raw, tmp_path / "b", val_fraction=0.25, seed=7)

    def keys(r, s):
        return [x["key"] for x in json.loads((r / s / "manifest.json").read_text())["sources"]]

    assert keys(tmp_path / "a", "val") == keys(tmp_path / "b", "val")
    assert not set(keys(tmp_path / "a", "val")) & set(keys(tmp_path / "a", "train"))


def test_arrays_are_npy_without_pickle(tmp_path):
    run(make_raw(tmp_path / "raw"), tmp_path / "out")
    for f in (tmp_path / "out" / "train").glob("*.npy"):
        arr = np.load(f, allow_pickle=False)
        assert arr.dtype == np.uint8
    assert not list((tmp_path / "out").rglob("*.pkl")) and not list((tmp_path / "out").rglob("*.partial*"))


def test_bad_files_are_skipped_counted_and_named(tmp_path):
    raw = make_raw(tmp_path / "raw", train=30, test=5)
    good = (raw / "train/benign/0.jpg").read_bytes()
    (raw / "train/benign/zero.jpg").write_bytes(b"")
    (raw / "train/benign/trunc.jpg").write_bytes(good[: len(good) // 3])
    (raw / "train/malignant/text.jpg").write_text("not an image")
    (raw / "train/malignant/notes.txt").write_text("hello")
    buf = io.BytesIO()
    Image.new("L", (40, 40), 255).save(buf, "PNG")
    (raw / "train/malignant/GRAY.PNG").write_bytes(buf.getvalue())  # converted, not skipped
    report = run(raw, tmp_path / "out", max_bad_fraction=0.1)
    reasons = {s["key"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {
        "train/benign/zero.jpg",
        "train/benign/trunc.jpg",
        "train/malignant/text.jpg",
        "train/malignant/notes.txt",
    }
    assert "empty" in reasons["train/benign/zero.jpg"]
    assert "truncated" in reasons["train/benign/trunc.jpg"]
    assert "not an image" in reasons["train/malignant/text.jpg"]
    assert "not a .jpg" in reasons["train/malignant/notes.txt"]
    total = sum(s["count"] for s in report.splits.values())
    assert total == 30 * 2 + 5 * 2 + 1


def test_too_many_bad_files_fail_and_leave_nothing(tmp_path):
    raw = make_raw(tmp_path / "raw", train=10, test=2)
    for i in range(3):
        (raw / f"train/benign/bad{i}.jpg").write_bytes(b"junk")
    with pytest.raises(dataset.DataError, match=r"3 of 27 files are unusable.*bad0.jpg.*max-bad-fraction"):
        run(raw, tmp_path / "out", max_bad_fraction=0.05)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_class_folder_fails_naming_the_uri(tmp_path):
    raw = make_raw(tmp_path / "raw")
    shutil.rmtree(raw / "test" / "malignant")
    with pytest.raises(dataset.DataError, match=r"raw: missing folder\(s\) test/malignant"):
        run(raw, tmp_path / "out")


def test_class_without_usable_images_fails(tmp_path):
    raw = make_raw(tmp_path / "raw")
    for f in (raw / "test" / "benign").iterdir():
        f.write_bytes(b"broken")
    with pytest.raises(
        dataset.DataError,
        match=r"test/benign: no usable image for the test split "
        r"\(4 file\(s\) assigned to it, 4 unreadable, 0 usable\)",
    ):
        run(raw, tmp_path / "out", max_bad_fraction=1.0)


def test_reader_refuses_unfinished_or_corrupt_split(tmp_path):
    run(make_raw(tmp_path / "raw"), tmp_path / "out")
    split = tmp_path / "out" / "train"
    shard = next(split.glob("images-*.npy"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(dataset.DataError, match="checksum mismatch"):
        dataset.SplitArrays(str(split))
    (split / "manifest.json").unlink()
    with pytest.raises(dataset.DataError, match="no manifest.json"):
        dataset.SplitArrays(str(split))


def test_shards_and_gather(tmp_path):
    raw = make_raw(tmp_path / "raw", train=10, test=3)
    dataset.preprocess(str(raw), {s: str(tmp_path / "out" / s) for s in SPLITS}, image_size=16, shard_size=4)
    split = dataset.SplitArrays(str(tmp_path / "out" / "train"))
    # 20 raw train images, 15 % (3) to validation: 17 in train, in shards of 4, 4, 4, 4 and 1.
    assert [len(s) for s in split.shards] == [4, 4, 4, 4, 1] and len(split) == 17
    idx = np.array([0, 5, len(split) - 1])
    assert np.array_equal(split.gather(idx), split.images()[idx])


def test_s3_preprocess_equals_local(tmp_path, s3_bucket):
    from tests.support.s3 import upload_tree

    raw = make_raw(tmp_path / "raw", train=8, test=3)
    uri = upload_tree(raw, s3_bucket, "skin")
    local = run(raw, tmp_path / "local")
    remote = run(uri, tmp_path / "s3")
    assert local.splits == remote.splits and remote.skipped == []
    for s in SPLITS:
        a, b = (dataset.SplitArrays(str(tmp_path / d / s)) for d in ("local", "s3"))
        assert np.array_equal(a.images(), b.images()) and np.array_equal(a.labels, b.labels)


def test_demo_data_is_synthetic_and_in_the_layout(tmp_path):
    from components.core.data.demo_data import write_demo_data

    counts = write_demo_data(str(tmp_path), train_per_class=3, test_per_class=2, size=32)
    assert counts == {"train/benign": 3, "train/malignant": 3, "test/benign": 2, "test/malignant": 2}
    assert "SYNTHETIC" in (tmp_path / "README.txt").read_text()
    assert all(p.name.startswith("synthetic-") for p in tmp_path.rglob("*.jpg"))


@pytest.mark.real_data
def test_real_data_counts(real_data, tmp_path):
    report = dataset.preprocess(str(real_data), {s: str(tmp_path / s) for s in SPLITS}, image_size=64)
    tv = {
        c: report.splits["train"]["class_counts"][c] + report.splits["val"]["class_counts"][c] for c in dataset.CLASSES
    }
    assert tv == {"benign": 1440, "malignant": 1197}
    assert report.splits["test"]["class_counts"] == {"benign": 176, "malignant": 148}
    assert report.skipped == []
