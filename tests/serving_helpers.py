"""Helpers for the serving tests: a small trained model, and `skin-cancer serve` running it on
127.0.0.1 in a subprocess (real HTTP, the real command line, the model loaded once).
The pytest fixtures built from these live in tests/serving_fixtures.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port

MODEL_NAME = "skin-cancer-classifier"
MODEL_VERSION = "7"
MAX_UPLOAD_MB = 2.0
MAX_PIXELS = 4_000_000
INFER = f"/v2/models/{MODEL_NAME}/infer"


def train_tiny_model(preprocessed: Path, out: Path) -> Path:
    """One epoch of the basic CNN (width 4) on the 32 px fixture data, saved as a Model artifact dir."""
    from components.core.data.dataset import CLASSES, open_splits
    from components.core.inference.model_dir import write_model_dir
    from components.core.modeling.training import TrainConfig, train_model

    cfg = TrainConfig(family="basic", epochs=1, batch_size=16, image_size=32, width=4, augment=False, seed=0)
    splits = open_splits(*(str(preprocessed / s) for s in ("train", "val", "test")))
    result = train_model(cfg, *splits)
    write_model_dir(str(out), result.model, {"threshold": result.threshold, "image_size": 32,
                                              "classes": list(CLASSES), "family": "basic", "mlflow_run_id": "tiny"},
                    result.policy.files())
    return out


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"server not ready within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


class Server:
    """``skin-cancer serve`` as a subprocess; ``url`` (HTTP) and ``grpc_url`` (V2 gRPC,
    ``HOST:PORT``) once it answers /v2/health/ready."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--grpc-port", str(self.grpc_port), *args],
            stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        try:
            wait_ready(self.url, self.proc, log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._fh.close()


def sample_images(demo_raw: Path) -> dict[str, list[Path]]:
    """The held-out (test split) SYNTHETIC images by class."""
    return {c: sorted((demo_raw / "test" / c).glob("*.jpg")) for c in ("benign", "malignant")}


def bomb_png(side: int) -> bytes:
    """A tiny PNG (1-bit, all zero) that decodes to ``side`` x ``side`` pixels."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def shared_bad_uploads(good: bytes) -> list[tuple[str, str, dict, int, str]]:
    """The bad uploads that both the API test and the load test send, as
    (id, path, requests kwargs, expected status, fragment of the error message).
    ``good`` is a valid JPEG whose truncation and wrong content type are among the cases."""
    over = int(MAX_UPLOAD_MB * 1024 * 1024) + 4096
    side = int(MAX_PIXELS ** 0.5) + 100
    return [
        ("non-image", "/predict", dict(files={"file": ("x.jpg", b"GIF89a? not really" * 40, "image/jpeg")}), 400,
         "not an image"),
        ("truncated-jpeg", "/predict", dict(files={"file": ("x.jpg", good[: len(good) // 2], "image/jpeg")}), 400,
         "truncated"),
        ("oversized-upload", "/predict", dict(files={"file": ("x.jpg", b"\xff" * over, "image/jpeg")}), 413,
         "upload limit"),
        ("oversized-v2", INFER, dict(data=b"{" + b" " * over + b"}", headers={"Content-Type": "application/json"}), 413,
         "upload limit"),
        ("bomb-over-limit", "/predict", dict(files={"file": ("bomb.png", bomb_png(side), "image/png")}), 400,
         "decompression bomb"),
        ("bomb-pil", "/predict", dict(files={"file": ("bomb.png", bomb_png(20000), "image/png")}), 400,
         "decompression bomb"),
        ("text-content-type", "/predict", dict(files={"file": ("x.jpg", good, "text/plain")}), 415, "not an image"),
        ("json-to-predict", "/predict", dict(json={"file": "x"}), 415, "multipart/form-data"),
        ("v2-text-plain", INFER, dict(data=b"{}", headers={"Content-Type": "text/plain"}), 415, "application/json"),
        ("v2-bad-base64", INFER, dict(json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                                        "data": ["%%%not base64"]}]}), 400, "base64"),
    ]


def kserve_v2_datamodels():
    """KServe's V2 REST data models (``kserve.protocol.rest.v2_datamodels``), loaded from their
    file. Importing the ``kserve`` package registers its gRPC protos (proto package
    ``inference``) in protobuf's default pool, and ``tritonclient.grpc`` registers the same names
    from its own protos: one process cannot import both. The models file needs only pydantic."""
    import importlib.util

    cached = sys.modules.get("kserve_v2_datamodels")
    if cached is not None:
        return cached
    package = importlib.util.find_spec("kserve")  # finds the package without importing it
    path = Path(package.submodule_search_locations[0]) / "protocol" / "rest" / "v2_datamodels.py"
    spec = importlib.util.spec_from_file_location("kserve_v2_datamodels", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
