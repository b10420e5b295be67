"""Data checks: leakage by content hash, duplicates, class imbalance, and the bad-file rules
at scale (thousands of files, a few bad ones)."""

from __future__ import annotations

import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from components.core.data import dataset
from tests.support.reliability_support import write_raw

SPLITS = dataset.OUTPUT_SPLITS


def _run(raw, out, **kw):
    return dataset.preprocess(str(raw), {s: str(out / s) for s in SPLITS}, image_size=16, val_fraction=0.25, **kw)


def test_same_image_in_train_and_test_is_leakage_and_fails_unless_allowed(tmp_path, caplog):
    raw = write_raw(tmp_path / "raw", train=10, test=4)
    shutil.copy(raw / "train/benign/0003.jpg", raw / "test/benign/copy-of-3.jpg")
    shutil.copy(raw / "train/malignant/0001.jpg", raw / "test/malignant/dup.jpg")
    out = tmp_path / "out"
    with pytest.raises(dataset.DataError) as info:
        _run(raw, out)
    message = str(info.value)
    assert "leakage: 2 test image(s) have byte-identical copies in train/val" in message
    assert "test/benign/copy-of-3.jpg = train/benign/0003.jpg" in message
    assert "test/malignant/dup.jpg = train/malignant/0001.jpg" in message
    assert "--allow-leakage" in message
    assert not out.exists() or not any(out.iterdir()), "a failed run left output behind"

    with caplog.at_level(logging.WARNING, logger="components.core.data.dataset"):
        report = _run(raw, out, allow_leakage=True)
    assert [g["keys"] for g in report.leakage] == [
        ["test/benign/copy-of-3.jpg", "train/benign/0003.jpg"],
        ["test/malignant/dup.jpg", "train/malignant/0001.jpg"],
    ]
    assert "leakage allowed by flag" in caplog.text
    assert report.to_dict()["leakage"] == report.leakage  # in the report that goes to MLflow


def test_cli_and_component_take_the_allow_leakage_flag(tmp_path, capsys):
    from components.preprocess import preprocess as component
    from pipelines.cli import main

    raw = write_raw(tmp_path / "raw", train=6, test=3)
    shutil.copy(raw / "train/benign/0000.jpg", raw / "test/benign/x.jpg")
    assert main(["preprocess", "--data", str(raw), "--out", str(tmp_path / "a"), "--image-size", "16"]) == 2
    assert "leakage" in capsys.readouterr().err
    assert (
        main(["preprocess", "--data", str(raw), "--out", str(tmp_path / "b"), "--image-size", "16", "--allow-leakage"])
        == 0
    )
    assert "warning: leakage allowed by flag" in capsys.readouterr().out
    spec = component.component_spec.inputs["allow_leakage"]
    assert spec.default is False and spec.type == "Boolean"


def test_train_val_duplicates_are_reported_not_fatal(tmp_path, caplog):
    raw = write_raw(tmp_path / "raw", train=12, test=4)
    # Mirrors the real data's one duplicate pair (train/malignant 768.jpg = 769.jpg): same folder.
    shutil.copy(raw / "train/malignant/0005.jpg", raw / "train/malignant/0005-again.jpg")
    with caplog.at_level(logging.WARNING, logger="components.core.data.dataset"):
        report = _run(raw, tmp_path / "out")
    assert [g["keys"] for g in report.duplicates] == [["train/malignant/0005-again.jpg", "train/malignant/0005.jpg"]]
    assert report.leakage == [] and "byte-identical images (train/val or within one split)" in caplog.text


def test_class_imbalance_is_reported_in_report_metadata_and_log(tmp_path, caplog, monkeypatch):
    from components.core.steps import preprocess as preprocess_step

    raw = write_raw(tmp_path / "raw", train=10, test=4, benign_train=30)  # 30 benign : 10 malignant
    with caplog.at_level(logging.WARNING, logger="components.core.data.dataset"):
        report = _run(raw, tmp_path / "out")
    assert report.class_balance["train"]["ratio"] == pytest.approx(3.0, rel=0.1)
    assert report.class_balance["train"]["majority"] == "benign"
    assert report.class_balance["test"] == {"malignant_fraction": 0.5, "ratio": 1.0, "majority": "benign"}
    assert "class imbalance in train: benign outnumbers the other class" in caplog.text
    assert "class imbalance in test" not in caplog.text

    # The pipeline step puts it on the Dataset artifacts (what the KFP UI shows).
    artifacts = {s: SimpleNamespace(path=str(tmp_path / "art" / s), metadata={}) for s in SPLITS}
    preprocess_step.run_preprocess(
        str(raw), 16, 0.25, 42, 0.01, f"sqlite:///{tmp_path / 'mlflow.db'}", "balance", artifacts
    )
    assert artifacts["train"].metadata["class_balance"]["ratio"] == pytest.approx(3.0, rel=0.1)


def test_bad_file_rules_hold_at_scale(tmp_path):
    """2,000 tiny JPEGs and a handful of bad files: exactly those are skipped and named."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    counts = {
        ("train", "benign"): 700,
        ("train", "malignant"): 700,
        ("test", "benign"): 300,
        ("test", "malignant"): 300,
    }
    for (split, cls), n in counts.items():
        folder = raw / split / cls
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg", quality=95)
    good = (raw / "train/benign/00000.jpg").read_bytes()
    bad = {
        "train/benign/zero.jpg": b"",
        "train/malignant/truncated.jpg": good[: len(good) // 2],
        "test/benign/text.jpg": b"this is a text file, not a JPEG\n" * 10,
        "test/malignant/fake.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    }
    for key, data in bad.items():
        (raw / key).write_bytes(data)
    (raw / "train/malignant/photo.gif").write_bytes(b"GIF89a")  # wrong extension
    (raw / "train/benign/notes.txt").write_text("hello")
    (raw / "README.md").write_text("beside the layout: not data, not a bad file")

    report = dataset.preprocess(
        str(raw), {s: str(tmp_path / "out" / s) for s in SPLITS}, image_size=16, val_fraction=0.15, shard_size=512
    )
    reasons = {s["key"]: s["reason"] for s in report.skipped}
    assert set(reasons) == set(bad) | {"train/malignant/photo.gif", "train/benign/notes.txt"}
    assert "empty" in reasons["train/benign/zero.jpg"]
    assert "truncated" in reasons["train/malignant/truncated.jpg"]
    assert "not an image" in reasons["test/benign/text.jpg"]
    assert "not a .jpg" in reasons["train/malignant/photo.gif"]
    assert report.total_images == 2000 + 4
    assert sum(s["count"] for s in report.splits.values()) == 2000
    assert report.splits["test"]["class_counts"] == {"benign": 300, "malignant": 300}
    tv = {
        c: report.splits["train"]["class_counts"][c] + report.splits["val"]["class_counts"][c] for c in dataset.CLASSES
    }
    assert tv == {"benign": 700, "malignant": 700}
    train = dataset.SplitArrays(str(tmp_path / "out" / "train"))
    assert len(train.shards) == 3 and len(train) == report.splits["train"]["count"]
    assert report.duplicates == [] and report.leakage == []
