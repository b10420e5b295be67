"""MLflow faults against a real `mlflow server` on 127.0.0.1 (and a dead port).

A server that is down at start fails the task within seconds with a clear TrackingError,
before any data is read or any model trained; blips during a run (503, 500, resets, and a
lost answer to the model-version create) are retried; registering the same run twice,
or an HTTP retry of the create, leaves exactly one model version.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest

from components.core.data.dataset import SplitArrays
from components.core.registry import tracking, versions
from components.core.steps import preprocess as preprocess_step
from components.core.steps import train as train_step
from tests.support.reliability_support import log_probe_model, write_probe_splits


@pytest.fixture(autouse=True)
def _isolated_credentials(monkeypatch):
    # tracking.setup moves URI credentials into these; keep each test's changes to itself.
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)


def _artifacts(tmp_path):
    return {s: SimpleNamespace(path=str(tmp_path / "artifacts" / s), metadata={}) for s in ("train", "val", "test")}


def test_tracking_server_down_fails_fast_and_before_any_work(preprocessed, demo_raw, tmp_path, monkeypatch):
    from components.core.data import dataset
    from components.core.modeling import training
    from tests.support.processes import free_port

    def must_not_run(*args, **kwargs):
        raise AssertionError("work started although MLflow is down")

    monkeypatch.setattr(training, "train_model", must_not_run)
    monkeypatch.setattr(dataset, "preprocess", must_not_run)
    port = free_port()  # nothing listens here
    dead = f"http://ci-user:ci-password-{uuid.uuid4().hex[:8]}@127.0.0.1:{port}"
    defaults = {"epochs": 1, "batch_size": 8, "learning_rate": 0.001, "image_size": 32, "seed": 1}

    started = time.monotonic()
    with pytest.raises(tracking.TrackingError) as info:
        train_step.run_train(
            {"family": "basic"},
            *(str(preprocessed / s) for s in ("train", "val", "test")),
            defaults,
            dead,
            "down",
            "",
            "test",
        )
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert f"http://127.0.0.1:{port} is not reachable" in message and "MLFLOW_TRACKING_URI" in message
    assert "ci-password" not in message and "ci-user" not in message
    assert elapsed < 20, f"took {elapsed:.0f} s to report a dead server"

    with pytest.raises(tracking.TrackingError, match="not reachable"):
        preprocess_step.run_preprocess(str(demo_raw), 32, 0.25, 1, 0.01, dead, "down", _artifacts(tmp_path))
    assert not (tmp_path / "artifacts").exists()


def test_registering_the_same_run_twice_gives_one_version(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    probe = write_probe_splits(tmp_path)
    val, test = SplitArrays(probe["val"]), SplitArrays(probe["test"])
    experiment = tracking.setup(mlflow_server, "idempotent")
    winner = log_probe_model("A", experiment)
    name = f"idem-{uuid.uuid4().hex[:6]}"
    first_reg = versions.register_winner(winner, name, val, test, {"try": "1"})
    retried = versions.register_winner(winner, name, val, test, {"try": "2"})  # a retried task
    found = MlflowClient(mlflow_server).search_model_versions(f"name='{name}'")
    assert len(found) == 1
    assert retried.version == first_reg.version and retried.alias == versions.CHAMPION
    assert first_reg.champion_changed and not retried.champion_changed
