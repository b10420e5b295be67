"""Slow tier of integration/test_components_local.py:"""

import json

import pytest

from tests.integration.test_components_local import preprocess_then_train  # noqa: F401 (fixtures are found by name)


@pytest.mark.slow
def test_train_component_under_kfp_local(kfp_local, demo_raw, mlflow_server, monkeypatch):
    import mlflow

    monkeypatch.setenv("KFP_RUN_ID", "local-test")  # on a cluster: the pod's pipeline/runid label

    result = json.loads(preprocess_then_train(data_uri=str(demo_raw), tracking_uri=mlflow_server).output)
    assert result["name"] == "tiny-basic" and result["model_uri"].startswith("models:/")
    assert {"accuracy", "auc", "sensitivity", "specificity", "confusion_matrix"} <= set(result["test"])
    run = mlflow.MlflowClient(mlflow_server).get_run(result["run_id"])
    assert run.data.tags["pipeline_run"] == "local-test" and run.data.tags["model_name"] == "tiny-basic"
    # The Model, Metrics and ClassificationMetrics artifacts the dashboard shows.
    root = kfp_local / "pipeline-root"
    model_json = next(root.rglob("model/model.json"))
    assert json.loads(model_json.read_text())["mlflow_run_id"] == result["run_id"]
    assert next(root.rglob("model/model.keras")).stat().st_size > 0
    outputs = [json.loads(p.read_text()) for p in root.rglob("train/executor_output.json")]
    arts = outputs[0]["artifacts"]
    metrics = arts["metrics"]["artifacts"][0]["metadata"]
    roc = arts["roc"]["artifacts"][0]["metadata"]
    assert metrics["val_accuracy"] == result["val"]["accuracy"]
    assert roc["confusionMatrix"]["annotationSpecs"] == [{"displayName": "benign"}, {"displayName": "malignant"}]
    assert len(roc["confidenceMetrics"]) > 1
