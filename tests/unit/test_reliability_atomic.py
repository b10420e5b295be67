"""Atomic outputs: a step that dies half way leaves nothing a later step or a rerun takes
for finished output; readers verify checksums and that splits belong together; reruns
are idempotent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.core.data import dataset
from tests.support.faults import wait_until
from tests.support.reliability_support import write_raw

SPLITS = dataset.OUTPUT_SPLITS
ROOT = Path(__file__).resolve().parents[2]


def _run(raw, out, **kw):
    return dataset.preprocess(str(raw), {s: str(out / s) for s in SPLITS}, image_size=16, val_fraction=0.25, **kw)


def _arrays(out):
    return [(dataset.SplitArrays(str(out / s)).images(), dataset.SplitArrays(str(out / s)).labels) for s in SPLITS]


def test_killed_preprocess_leaves_nothing_complete_looking_and_a_rerun_is_idempotent(tmp_path):
    out = tmp_path / "out"
    _run(write_raw(tmp_path / "old", train=8, test=3, seed=1), out)  # an earlier, finished run
    new_raw = write_raw(tmp_path / "new", train=400, test=100, size=48, seed=2)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "preprocess",
            "--data",
            str(new_raw),
            "--out",
            str(out),
            "--image-size",
            "32",
            "--val-fraction",
            "0.25",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill it while it is writing (a partial split directory exists).
        started = wait_until(
            lambda: any(out.glob(".*.partial-*")) or proc.poll() is not None, timeout=120, interval=0.002
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert started and proc.returncode == -signal.SIGKILL, "preprocessing finished before it could be killed"

    # Neither the earlier run's splits nor a half of the new one look finished.
    for s in SPLITS:
        assert not (out / s / "manifest.json").exists(), f"{s} looks finished after the kill"
    with pytest.raises(dataset.DataError):
        dataset.open_splits(*(str(out / s) for s in SPLITS))

    # A rerun cleans up and succeeds; it equals a clean run elsewhere, and a third run changes nothing.
    again = _run(new_raw, out, allow_leakage=False)
    assert not list(out.glob(".*.partial-*")), "stale partial directories were left"
    clean = _run(new_raw, tmp_path / "clean")
    assert again.splits == clean.splits and again.fingerprint == clean.fingerprint
    for (ai, al), (bi, bl) in zip(_arrays(out), _arrays(tmp_path / "clean")):
        assert np.array_equal(ai, bi) and np.array_equal(al, bl)
    before = [json.loads((out / s / "manifest.json").read_text()) for s in SPLITS]
    _run(new_raw, out)
    assert [json.loads((out / s / "manifest.json").read_text()) for s in SPLITS] == before


def test_reader_verifies_the_labels_checksum_too(tmp_path):
    out = tmp_path / "out"
    _run(write_raw(tmp_path / "raw", train=8, test=3), out)
    labels = np.load(out / "train" / "labels.npy")
    labels[0] = 1 - labels[0]  # a valid .npy with one label flipped
    np.save(out / "train" / "labels.npy", labels, allow_pickle=False)
    with pytest.raises(dataset.DataError, match=r"train/labels.npy: checksum mismatch"):
        dataset.SplitArrays(str(out / "train"))


def test_splits_from_different_runs_are_refused_before_training(tmp_path, monkeypatch):
    from components.core.modeling import training
    from components.core.steps import train as train_step

    a, b = tmp_path / "a", tmp_path / "b"
    _run(write_raw(tmp_path / "raw-a", train=8, test=3, seed=1), a)
    _run(write_raw(tmp_path / "raw-b", train=8, test=3, seed=2), b)
    mixture = (str(a / "train"), str(b / "val"), str(a / "test"))
    with pytest.raises(dataset.DataError, match="come from different preprocessing runs"):
        dataset.open_splits(*mixture)

    monkeypatch.setattr(training, "train_model", lambda *a, **k: pytest.fail("trained on a mixture"))
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(dataset.DataError, match="different preprocessing runs"):
        train_step.run_train(
            {"family": "basic"}, *mixture, {"epochs": 1, "image_size": 16}, tracking_uri, "mixture", "", "test"
        )


class _TornModel:
    """Writes half a file, then the task "dies"."""

    def save(self, path):
        Path(path).write_bytes(b"half a model")
        raise KeyboardInterrupt("killed while saving")


class _GoodModel:
    def __init__(self, payload: bytes):
        self.payload = payload

    def save(self, path):
        Path(path).write_bytes(self.payload)


def test_model_artifact_is_written_whole_or_not_at_all(tmp_path):
    from components.core.inference.model_dir import write_model_dir

    target = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        write_model_dir(str(target), _TornModel(), {"threshold": 0.5})
    assert not target.exists() and not list(tmp_path.iterdir()), "a torn model directory was left"

    write_model_dir(str(target), _GoodModel(b"v1"), {"threshold": 0.4})
    write_model_dir(str(target), _GoodModel(b"v2"), {"threshold": 0.6})  # a retried task
    assert (target / "model.keras").read_bytes() == b"v2"
    assert json.loads((target / "model.json").read_text()) == {"threshold": 0.6}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
