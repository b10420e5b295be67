"""No test leaks environment variables into the next (tests/conftest.py undoes them). The two
tests run in this order: the first writes MLflow's credentials the way the product does, the
second must not see them."""

import os

from components.core.registry import tracking


def test_a_test_that_moves_uri_credentials_into_the_environment():
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
    os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
    assert tracking.use_uri_credentials("http://leaky:s3cret@127.0.0.1:9") == "http://127.0.0.1:9"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    os.environ["SKIN_CANCER_LEAK_PROBE"] = "set by the previous test"


def test_the_next_test_does_not_see_them():
    assert os.environ.get("MLFLOW_TRACKING_PASSWORD") != "s3cret"
    assert os.environ.get("MLFLOW_TRACKING_USERNAME") != "leaky"
    assert "SKIN_CANCER_LEAK_PROBE" not in os.environ
