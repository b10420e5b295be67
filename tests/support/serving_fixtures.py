"""Fixtures shared by the serving test modules (registered with ``pytest_plugins``, so one
trained model and one server per worker serve every serving test module)."""

from pathlib import Path

import pytest

from tests.support.serving_helpers import (
    MAX_PIXELS,
    MAX_UPLOAD_MB,
    Server,
    sample_images,
    train_tiny_model,
)


@pytest.fixture(scope="session")
def tiny_model_dir(preprocessed, tmp_path_factory) -> Path:
    return train_tiny_model(preprocessed, tmp_path_factory.mktemp("serving-model") / "model")


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serving-log") / "server.log"
    srv = Server.tiny(tiny_model_dir, log, ["--max-upload-mb", str(MAX_UPLOAD_MB), "--max-pixels", str(MAX_PIXELS)])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def images(demo_raw):
    return sample_images(demo_raw)


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The same model loaded in this process: what the server must answer."""
    from components.core.inference.predictor import Predictor

    return Predictor.load(str(tiny_model_dir))
