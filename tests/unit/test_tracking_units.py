"""MLflow credentials never travel inside a URI: hand-worked cases of use_uri_credentials and redact."""

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
        "from-secret", "secret-from-secret")


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


@pytest.mark.parametrize("uri, expected", [
    ("http://u:p@host:5000/a", "http://host:5000/a"),
    ("https://token@host/a", "https://host/a"),
    ("s3://bucket/prefix", "s3://bucket/prefix"),
])
def test_redact(uri, expected):
    assert tracking.redact(uri) == expected
