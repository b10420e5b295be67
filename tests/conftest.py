"""Shared fixtures: real servers on 127.0.0.1 (S3 via moto, MLflow with SQLite), tiny data, kfp.local.

Nothing here patches boto3 or MLflow in-process: tests talk to the servers over HTTP.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port, start_mlflow_server, stop

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "skin-cancer"


def _restore_environment(saved: dict[str, str | None], names=None) -> None:
    """Put ``names`` (default: every variable, now or in ``saved``) back as ``saved`` had them.
    MLflow keeps its tracking URI in the process too and writes the variable only when that
    changes, so it is told as well."""
    names = set(saved) | set(os.environ) if names is None else names
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    for name in names:
        if saved.get(name) is None:
            os.environ.pop(name, None)
        elif os.environ.get(name) != saved[name]:
            os.environ[name] = saved[name]
    if os.environ.get("MLFLOW_TRACKING_URI") != uri_before and "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))


# Variables a session fixture owns (S3's): a session fixture first requested inside a test
# (request.getfixturevalue) sets them after the test's snapshot, and they must outlive the test.
SESSION_VARIABLES: set[str] = set()


@pytest.fixture(autouse=True)
def _environment_stays_with_the_test():
    """What a test, or the code it runs, writes into ``os.environ`` is undone after it: MLflow's
    credential variables (tracking.use_uri_credentials moves URI credentials there), the tracking
    URI (mlflow.set_tracking_uri writes it), anything else. Session and module fixtures set up
    before the test (S3's variables) are part of what is restored."""
    saved = dict(os.environ)
    yield
    _restore_environment(saved, (set(saved) | set(os.environ)) - SESSION_VARIABLES)


MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@pytest.fixture(autouse=True, scope="module")
def _mlflow_environment_stays_with_the_module():
    """A module's fixtures point MLflow at a server (tracking.setup, mlflow.set_tracking_uri write
    MLflow's variables): undone when the module ends, so no module runs on another's MLflow
    settings. Only MLflow's: session fixtures (S3's variables) may be set up within a module."""
    saved = {name: os.environ.get(name) for name in MLFLOW_VARIABLES}
    yield
    _restore_environment(saved, MLFLOW_VARIABLES)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1; the AWS environment points boto3 at it."""
    from moto.server import ThreadedMotoServer

    from components.core.data import storage

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing-key-id",
        AWS_SECRET_ACCESS_KEY="testing-secret-key",
        AWS_DEFAULT_REGION="us-east-1",
    )
    SESSION_VARIABLES.update(saved)
    storage._s3_client.cache_clear()
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    SESSION_VARIABLES.difference_update(saved)
    storage._s3_client.cache_clear()


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    import boto3

    name = f"test-{request.node.name.lower().replace('_', '-')[:40]}-{os.getpid()}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, served artifacts) on 127.0.0.1."""
    proc, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield uri
    stop(proc, 30)


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory) -> Path:
    """A tiny SYNTHETIC raw data set: 24 train and 8 test images per class, 48 px."""
    from components.core.data.demo_data import write_demo_data

    root = tmp_path_factory.mktemp("demo-raw")
    write_demo_data(str(root), train_per_class=24, test_per_class=8, size=48, seed=1)
    return root


@pytest.fixture(scope="session")
def preprocessed(demo_raw, tmp_path_factory) -> Path:
    from components.core.data import dataset

    out = tmp_path_factory.mktemp("preprocessed")
    dataset.preprocess(
        str(demo_raw), {s: str(out / s) for s in dataset.OUTPUT_SPLITS}, image_size=32, val_fraction=0.25
    )
    return out


@pytest.fixture
def kfp_local(tmp_path):
    """KFP's own local runner, running components as subprocesses of this Python."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pipeline-root"))
    return tmp_path


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real images not present at {REAL_DATA}")
    return REAL_DATA


# Debian's chromium, driven by Playwright (which cannot download its own browsers here).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Set by scripts/test.sh where Chromium is installed (CI): a browser test that cannot run is then
# a failure, not a skip that nobody reads (as SKIN_CANCER_REQUIRE_AUDIT does for the audit).
REQUIRE_BROWSER = "SKIN_CANCER_REQUIRE_BROWSER"


def _no_browser(why: str):
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{REQUIRE_BROWSER}=1 but the browser tests cannot run: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _no_browser("Chromium not installed (apt-get install chromium; scripts/test.sh does it as root)")
    try:
        from playwright import sync_api
    except ImportError:
        _no_browser("playwright not installed (bash scripts/install.sh)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


# The folder is the tier: tests/slow and tests/container carry their marker whether or not each
# test repeats it, so the default tier (pyproject's addopts) never runs them by accident.
_FOLDER_MARKS = {"slow": "slow", "container": "container"}


def pytest_collection_modifyitems(config, items):
    tests_root = Path(__file__).parent
    for item in items:
        try:
            folder = Path(item.fspath).relative_to(tests_root).parts[0]
        except ValueError:
            continue
        if folder in _FOLDER_MARKS:
            item.add_marker(getattr(pytest.mark, _FOLDER_MARKS[folder]))
