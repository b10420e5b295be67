"""Helpers for the serving tests: a small trained model, and `skin-cancer serve` running it on
127.0.0.1 in a subprocess (real HTTP, the real command line, the model loaded once).
The pytest fixtures built from these live in tests/support/serving_fixtures.py."""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from tests.support.processes import free_port, start, stop

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
    write_model_dir(
        str(out),
        result.model,
        {
            "threshold": result.threshold,
            "image_size": 32,
            "classes": list(CLASSES),
            "family": "basic",
            "mlflow_run_id": "tiny",
        },
        result.policy.files(),
    )
    return out


class Server:
    """``skin-cancer serve`` as a subprocess; ``url`` (HTTP) and ``grpc_url`` (V2 gRPC,
    ``HOST:PORT``) once it answers /v2/health/ready."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.log = log
        self.proc = start(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--grpc-port",
                str(self.grpc_port),
                *args,
            ],
            f"{self.url}/v2/health/ready",
            log,
            env={**os.environ, **(env or {})},
        )

    @classmethod
    def tiny(cls, model_dir: Path, log: Path, extra: list[str] = ()) -> "Server":
        """The tests' tiny model, served under the tests' model name and version."""
        args = ["--model-uri", str(model_dir), "--model-name", MODEL_NAME, "--model-version", MODEL_VERSION]
        return cls([*args, *extra], log)

    def stop(self) -> None:
        stop(self.proc, 30)


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
    side = int(MAX_PIXELS**0.5) + 100
    return [
        (
            "non-image",
            "/predict",
            dict(files={"file": ("x.jpg", b"GIF89a? not really" * 40, "image/jpeg")}),
            400,
            "not an image",
        ),
        (
            "truncated-jpeg",
            "/predict",
            dict(files={"file": ("x.jpg", good[: len(good) // 2], "image/jpeg")}),
            400,
            "truncated",
        ),
        (
            "oversized-upload",
            "/predict",
            dict(files={"file": ("x.jpg", b"\xff" * over, "image/jpeg")}),
            413,
            "upload limit",
        ),
        (
            "oversized-v2",
            INFER,
            dict(data=b"{" + b" " * over + b"}", headers={"Content-Type": "application/json"}),
            413,
            "upload limit",
        ),
        (
            "bomb-over-limit",
            "/predict",
            dict(files={"file": ("bomb.png", bomb_png(side), "image/png")}),
            400,
            "decompression bomb",
        ),
        (
            "bomb-pil",
            "/predict",
            dict(files={"file": ("bomb.png", bomb_png(20000), "image/png")}),
            400,
            "decompression bomb",
        ),
        ("text-content-type", "/predict", dict(files={"file": ("x.jpg", good, "text/plain")}), 415, "not an image"),
        ("json-to-predict", "/predict", dict(json={"file": "x"}), 415, "multipart/form-data"),
        ("v2-text-plain", INFER, dict(data=b"{}", headers={"Content-Type": "text/plain"}), 415, "application/json"),
        (
            "v2-bad-base64",
            INFER,
            dict(json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%not base64"]}]}),
            400,
            "base64",
        ),
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


def multipart(data: bytes, filename: str, content_type: str, boundary: str = "loadtest-boundary") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_file(url, data: bytes, filename="lesion.jpg", content_type="image/jpeg", path="/predict"):
    return requests.post(url + path, files={"file": (filename, data, content_type)}, timeout=60)


def v2_bytes(*blobs: bytes, **extra) -> dict:
    return {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(blobs)],
                "data": [base64.b64encode(b).decode() for b in blobs],
            }
        ],
        **extra,
    }


def outputs(answer: dict) -> dict:
    return {o["name"]: o for o in answer["outputs"]}


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def metrics_of(url: str) -> dict:
    """``GET /metrics`` parsed: {(sample name, labels as sorted tuple): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def metric_total(metrics: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in metrics.items() if n == name and set(labels.items()) <= set(ls))
