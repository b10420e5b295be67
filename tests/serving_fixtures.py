"""Fixtures shared by the serving test modules (registered with ``pytest_plugins``, so one
trained model and one server serve tests/test_serving_api.py and tests/test_serving_browser.py)."""

from pathlib import Path

import pytest

from tests.serving_helpers import MAX_PIXELS, MAX_UPLOAD_MB, MODEL_NAME, MODEL_VERSION, Server, train_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(preprocessed, tmp_path_factory) -> Path:
    return train_tiny_model(preprocessed, tmp_path_factory.mktemp("serving-model") / "model")


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serving-log") / "server.log"
    srv = Server(["--model-uri", str(tiny_model_dir), "--model-name", MODEL_NAME, "--model-version", MODEL_VERSION,
                  "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-pixels", str(MAX_PIXELS)], log)
    yield srv
    srv.stop()
