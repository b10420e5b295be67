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


def train_tiny_model(preprocessed: Path, out: Path) -> Path:
    """One epoch of the basic CNN (width 4) on the 32 px fixture data, saved as a Model artifact dir."""
    from components.core.dataset import CLASSES, open_splits
    from components.core.stages import write_model_dir
    from components.core.training import TrainConfig, train_model

    cfg = TrainConfig(family="basic", epochs=1, batch_size=16, image_size=32, width=4, augment=False, seed=0)
    splits = open_splits(*(str(preprocessed / s) for s in ("train", "val", "test")))
    result = train_model(cfg, *splits)
    write_model_dir(str(out), result.model, {"threshold": result.threshold, "image_size": 32,
                                              "classes": list(CLASSES), "family": "basic", "mlflow_run_id": "tiny"})
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
    """``skin-cancer serve`` as a subprocess; ``url`` once it answers /v2/health/ready."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
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
