"""`skin-cancer` as a person runs it, in a fresh process, and the tiny model the end-to-end runs train."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# One small CNN, two epochs' worth of work: `skin-cancer run` end to end in seconds.
TINY = [
    {
        "family": "basic",
        "name": "tiny",
        "width": 4,
        "augment": False,
        "early_stopping_patience": 0,
        "extra": {"blocks": 1},
    }
]


def run_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m pipelines.cli ARGS` without this process's MLflow URI and KFP run id (a person's
    shell has neither), plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "KFP_RUN_ID")}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
