"""Slow tier of integration/test_training.py: Model zoo, training, input pipeline and MLflow logging (real `mlflow server`)."""

import json

import numpy as np
import pytest

from components.core.modeling.training import TrainConfig, fit_one, train_model
from tests.integration.test_training import TINY, check_one_step, splits  # noqa: F401 (fixtures are found by name)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["resnet50", "efficientnet", "mobilenetv3"])
def test_each_family_builds_and_trains_a_step(family, splits):
    check_one_step(family, splits)


@pytest.mark.slow
def test_learning_rate_reaches_the_optimizer(splits):
    cfg = TrainConfig(family="basic", width=4, learning_rate=0.0123, **TINY)
    model, _ = fit_one(cfg, splits[0], splits[1])
    schedule = model.optimizer._learning_rate
    assert pytest.approx(float(schedule.initial_learning_rate)) == 0.0123
    assert float(schedule(0)) == pytest.approx(0.0123)


@pytest.mark.slow
def test_crossval_logs_k_folds_and_keeps_a_model(splits):
    result = train_model(TrainConfig(family="crossval", folds=3, width=4, **TINY), *splits)
    assert [f["fold"] for f in result.fold_scores] == [0, 1, 2]
    assert all(0 <= f["accuracy"] <= 1 for f in result.fold_scores)
    assert result.model is not None and result.params > 0
    assert 0 <= result.test["accuracy"] <= 1 and len(result.test["confusion_matrix"]) == 2


@pytest.mark.slow
def test_training_run_logged_to_mlflow_and_reloads_identically(
    splits, preprocessed, mlflow_server, tmp_path, monkeypatch
):
    import mlflow

    monkeypatch.setenv("KFP_RUN_ID", "run-1")

    from components.core.steps.train import run_train

    out = json.loads(
        run_train(
            {"family": "basic", "width": 4, "name": "tiny"},
            *(str(preprocessed / s) for s in ("train", "val", "test")),
            {**TINY, "epochs": 2, "seed": 3, "learning_rate": 0.01},
            mlflow_server,
            "test-training",
            "fp123",
        )
    )
    client = mlflow.MlflowClient(mlflow_server)
    run = client.get_run(out["run_id"])
    assert run.data.params["learning_rate"] == "0.01" and run.data.params["family"] == "basic"
    assert run.data.tags["data_fingerprint"] == "fp123" and run.data.tags["pipeline_run"] == "run-1"
    assert "val_accuracy" in run.data.metrics and "test_auc" in run.data.metrics
    assert len(client.get_metric_history(out["run_id"], "loss")) == 2  # per-epoch history
    raw = np.random.default_rng(1).integers(0, 256, (4, 50, 50, 3), dtype=np.uint8)
    mlflow.set_tracking_uri(mlflow_server)
    pyfunc = mlflow.pyfunc.load_model(out["model_uri"])
    keras_model = mlflow.tensorflow.load_model(out["model_uri"])
    before = np.asarray(keras_model(raw, training=False)).reshape(-1)
    after = np.asarray(pyfunc.predict(raw)).reshape(-1)
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-6)
    info = mlflow.models.get_model_info(out["model_uri"])
    assert info.signature is not None and info.metadata["threshold"] == pytest.approx(out["threshold"])
