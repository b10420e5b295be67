"""MLflow tracking, hand-worked: credentials never travel inside a URI; a logged model names its requirements."""

import pytest

from components.core.registry import tracking

CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)


def test_user_and_password_move_to_mlflows_variables(monkeypatch):
    import os

    bare = tracking.use_uri_credentials("https://ana:s%40cret@mlflow.example:5000/prefix?x=1")
    assert bare == "https://mlflow.example:5000/prefix?x=1"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "ana"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s@cret"  # percent-decoded
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_credentials_already_in_the_environment_win(monkeypatch):
    import os

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "from-secret")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret-from-secret")
    assert tracking.use_uri_credentials("http://u:p@host:5000") == "http://host:5000"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
        "from-secret",
        "secret-from-secret",
    )


def test_the_environments_uri_is_rewritten_bare_for_child_processes(monkeypatch):
    import os

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://u:p@host:5000")
    assert tracking.use_uri_credentials("http://u:p@host:5000") == "http://host:5000"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://host:5000"


@pytest.mark.parametrize("uri", ["sqlite:////tmp/mlflow.db", "http://host:5000", "file:///tmp/x", "databricks"])
def test_uris_without_credentials_are_left_alone(uri):
    import os

    assert tracking.use_uri_credentials(uri) == uri
    assert not any(name in os.environ for name in CREDENTIAL_VARS)


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("http://u:p@host:5000/a", "http://host:5000/a"),
        ("https://token@host/a", "https://host/a"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)
def test_redact(uri, expected):
    assert tracking.redact(uri) == expected


def test_a_logged_model_carries_the_installed_pins_without_inference(tmp_path, monkeypatch):
    """MLflow gets the model's requirements from us (the lock's versions, as installed); it must not
    fall back to inferring them by loading the model in a subprocess."""
    from importlib.metadata import version

    import keras
    import mlflow
    import mlflow.models

    def must_not_infer(*args, **kwargs):
        raise AssertionError("MLflow inferred the requirements")

    monkeypatch.setattr(mlflow.models, "infer_pip_requirements", must_not_infer)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    inputs = keras.Input((None, None, 3), dtype="uint8")
    model = keras.Model(
        inputs,
        keras.layers.Dense(1, activation="sigmoid")(
            keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
        ),
    )
    experiment = mlflow.create_experiment("pins", artifact_location=str(tmp_path / "artifacts"))
    with mlflow.start_run(experiment_id=experiment):
        info = tracking.log_model(model, 0.5, 16, "probe")
    requirements = mlflow.pyfunc.get_model_dependencies(info.model_uri, format="pip")
    pins = set(open(requirements).read().split())
    assert {f"{name}=={version(name)}" for name in tracking.MODEL_REQUIREMENTS} <= pins
    assert f"mlflow=={version('mlflow')}" in pins
