"""No silent defaults for what decides a diagnosis: a model without its stored threshold or
input size is refused by name, wherever it is loaded (predict and serve load through
Predictor; the registry scores the champion through decision_settings)."""

import json

import keras
import numpy as np
import pytest

from components.core.decision import DecisionPolicy, PolicyError
from components.core.decision.scope import ScopeModel
from components.core.inference.predictor import ModelMetadataError, Predictor, decision_settings


def test_decision_settings_are_read_never_assumed():
    assert decision_settings({"threshold": 0.31, "image_size": 96}, "m") == (0.31, 96)
    with pytest.raises(ModelMetadataError, match=r"^models:/x/3: the model's metadata has no threshold, so"):
        decision_settings({"image_size": 96}, "models:/x/3")
    with pytest.raises(ModelMetadataError, match="has no threshold and no image_size"):
        decision_settings(None, "models:/x/3")
    with pytest.raises(ModelMetadataError, match="has no image_size"):
        decision_settings({"threshold": 0.4, "image_size": ""}, "m")


def _tiny_model_dir(path, meta: dict, with_policy: bool = True):
    inputs = keras.Input((None, None, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(keras.layers.Resizing(8, 8)(inputs))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    path.mkdir()
    keras.Model(inputs, outputs).save(path / "model.keras")
    (path / "model.json").write_text(json.dumps(meta))
    if with_policy:
        scope = ScopeModel(np.eye(4, dtype=np.float32), 0.2, 0.01)
        DecisionPolicy(
            meta.get("threshold", 0.5), {"benign_max_p": 0.5, "malignant_min_p": 0.5, "level": 0.9}, scope
        ).save(path)
    return path


def test_a_model_artifact_without_a_threshold_is_refused_by_predict_and_serve(tmp_path):
    ok = Predictor.load(str(_tiny_model_dir(tmp_path / "ok", {"threshold": 0.25, "image_size": 8})))
    assert (ok.threshold, ok.image_size) == (0.25, 8)
    bare = _tiny_model_dir(tmp_path / "bare", {"image_size": 8, "family": "basic"})
    with pytest.raises(ModelMetadataError, match=rf"{bare / 'model.json'}: the model's metadata has no threshold"):
        Predictor.load(str(bare))


def test_a_model_artifact_without_a_decision_policy_is_refused_by_name(tmp_path):
    """No consumer may decide without the policy (issue 26): no silent fall-back to the threshold."""
    bare = _tiny_model_dir(tmp_path / "no-policy", {"threshold": 0.25, "image_size": 8}, with_policy=False)
    with pytest.raises(
        PolicyError, match=rf"^{bare}: the model has no decision policy \(decision.json, scope.npz missing\)"
    ):
        Predictor.load(str(bare))


def test_the_registry_refuses_to_score_a_registered_model_without_a_threshold(mlflow_server):
    import mlflow

    from components.core.registry.tracking import model_requirements
    from components.core.registry.versions import evaluate_model_uri

    mlflow.set_tracking_uri(mlflow_server)
    inputs = keras.Input((32, 32, 3), dtype="float32")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    with mlflow.start_run():
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            registered_model_name="no-threshold-model",
            metadata={"image_size": 32},
            pip_requirements=model_requirements(),
        )
    assert str(info.registered_model_version) == "1"
    # Refused before any data is read or the model loaded.
    with pytest.raises(ModelMetadataError, match="models:/no-threshold-model/1: the model's metadata has no threshold"):
        evaluate_model_uri("models:/no-threshold-model/1", val=None, test=None)
