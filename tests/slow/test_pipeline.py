"""Slow tier of integration/test_pipeline.py: The whole pipeline under kfp.local against a real MLflow server: champion, challenger, takeover."""

import mlflow
import pytest

from tests.integration.test_pipeline import STRONG, WEAK, run_pipeline  # noqa: F401 (fixtures are found by name)


@pytest.mark.slow
def test_champion_challenger_and_takeover(kfp_local, demo_raw, mlflow_server, monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "run-under-test")
    name = "pipeline-test-model"
    client = mlflow.MlflowClient(mlflow_server)

    first = run_pipeline(demo_raw, mlflow_server, [STRONG, WEAK], name)
    assert first["winner"] == "strong"  # chosen on validation accuracy
    reg = first["registered_model"]
    assert (reg["version"], reg["alias"], reg["champion_changed"]) == ("1", "champion", True)
    v1 = client.get_model_version_by_alias(name, "champion")
    assert v1.version == "1" and v1.tags["model_name"] == "strong" and v1.tags["family"] == "basic"
    assert v1.tags["data_fingerprint"] == first["data_fingerprint"] and v1.tags["pipeline_run"] == "run-under-test"
    strong_val = next(m for m in first["models"] if m["name"] == "strong")["val"]["accuracy"]
    assert float(v1.tags["val_accuracy"]) == pytest.approx(strong_val, abs=1e-4) and strong_val >= 0.8

    second = run_pipeline(demo_raw, mlflow_server, [WEAK], name)
    reg = second["registered_model"]
    assert (reg["version"], reg["alias"], reg["champion_changed"]) == ("2", "challenger", False)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    assert second["previous_champion"]["val"]["accuracy"] > second["models"][0]["val"]["accuracy"]

    third = run_pipeline(demo_raw, mlflow_server, [STRONG], name)
    reg = third["registered_model"]
    assert (reg["version"], reg["alias"], reg["champion_changed"]) == ("3", "champion", True)
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    # Stages are never used: aliases only.
    assert all(v.current_stage in ("None", "", None) for v in client.search_model_versions(f"name='{name}'"))
