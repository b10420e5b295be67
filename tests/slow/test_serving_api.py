"""Slow tier of integration/test_serving_api.py: `skin-cancer serve` loads the champion from MLflow."""

import json

import pytest

from tests.support.serving_helpers import MODEL_NAME, Server, post_file

# The model and server fixtures (tests/support/serving_fixtures.py).
pytest_plugins = ["tests.support.serving_fixtures"]


@pytest.mark.slow
def test_serve_loads_the_champion_from_mlflow(tiny_model_dir, tmp_path, images):
    """`skin-cancer serve` with its default --model-uri models:/skin-cancer-classifier@champion."""
    import keras
    import mlflow
    from mlflow import MlflowClient

    from components.core.registry import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.setup(uri, "serving-test")
    meta = json.loads((tiny_model_dir / "model.json").read_text())
    model = keras.saving.load_model(tiny_model_dir / "model.keras")
    from components.core.decision import DecisionPolicy

    policy = DecisionPolicy.load(tiny_model_dir)
    with mlflow.start_run():
        info = tracking.log_model(model, meta["threshold"], meta["image_size"], "basic", policy.summary())
        tracking.log_policy_files(policy)
    version = mlflow.register_model(info.model_uri, MODEL_NAME)
    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", version.version)
    srv = Server([], tmp_path / "server.log", env={"MLFLOW_TRACKING_URI": uri})
    try:
        body = post_file(srv.url, images["malignant"][0].read_bytes()).json()
        assert body["model_name"] == MODEL_NAME and body["model_version"] == str(version.version)
        assert body["threshold"] == pytest.approx(meta["threshold"])
        assert post_file(srv.url, images["malignant"][0].read_bytes(), path="/explain").status_code == 200
    finally:
        srv.stop()
