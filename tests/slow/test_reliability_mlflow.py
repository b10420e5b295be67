"""Slow tier of integration/test_reliability_mlflow.py: MLflow faults against a real `mlflow server` on 127.0.0.1 (and a dead port)."""

from __future__ import annotations

import uuid

import pytest

from components.core.data.dataset import SplitArrays
from components.core.registry import tracking, versions
from tests.support.faults import FaultProxy, combine, every, first
from tests.support.reliability_support import log_probe_model, write_probe_splits


@pytest.mark.slow
def test_blips_during_a_run_are_retried_and_registration_happens_once(mlflow_server, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    probe = write_probe_splits(tmp_path)
    name = f"blips-{uuid.uuid4().hex[:6]}"
    plan = combine(
        # The server registers the version, but its answer is lost: MLflow's HTTP retry sends it again.
        first("lost", "/model-versions/create", methods=["POST"]),
        every(4, ["503", "reset", "500"]),
    )
    with FaultProxy(mlflow_server, plan) as proxy:
        experiment = tracking.setup(proxy.url, "blips")
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_params({"a": 1, "b": "two"})
            for step in range(5):
                mlflow.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            tracking.log_json({"ok": True}, "report.json")
        winner = log_probe_model("B", experiment)
        reg = versions.register_winner(winner, name, SplitArrays(probe["val"]), SplitArrays(probe["test"]), {})

    injected = proxy.faults()
    assert "lost" in injected and {"503", "reset", "500"} <= set(injected), injected
    direct = MlflowClient(mlflow_server)
    logged = direct.get_run(run.info.run_id)
    assert logged.info.status == "FINISHED" and logged.data.params == {"a": "1", "b": "two"}
    assert [m.value for m in direct.get_metric_history(run.info.run_id, "loss")] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert [a.path for a in direct.list_artifacts(run.info.run_id)] == ["report.json"]
    found = direct.search_model_versions(f"name='{name}'")
    assert [v.version for v in found] == [reg.version], "a retried create left a second version"
    assert direct.get_model_version_by_alias(name, versions.CHAMPION).version == reg.version
