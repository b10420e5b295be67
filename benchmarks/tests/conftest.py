"""Fixtures of the benchmark suite's own tests (``tests/conftest.py`` is not in scope here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def real_data() -> Path:
    """The real images where ``python -m benchmarks`` looks by default; skipped when absent."""
    from benchmarks.data import find_default_data

    path = find_default_data()
    if not path.is_dir():
        pytest.skip(f"real images not present at {path}")
    return path
