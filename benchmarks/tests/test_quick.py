"""The benchmark suite on a subset of the real images (``python -m benchmarks --quick``).

Marked ``benchmark``: excluded from the default run. Run with
``pytest -m benchmark benchmarks/tests``. It checks that every measurement runs and the
reports are written; it asserts no timings (those are for the report, not for a test).
"""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main

pytestmark = pytest.mark.benchmark


@pytest.mark.timeout(1800)
def test_bench_quick_on_real_images(real_data, tmp_path):
    out = tmp_path / "bench"
    rc = main(["--quick", "--data", str(real_data), "--out", str(out)])
    report = json.loads((out / "bench.json").read_text())
    assert rc == 0, report["failures"]
    assert report["data"]["full_data_set"] is False and report["mode"] == "quick"
    assert report["command"].startswith("python -m benchmarks --quick")
    assert report["preprocessing"]["224"]["a_over_b"] > 0
    assert report["preprocessing"]["224"]["reference"]["pickle_bytes"] > 0
    assert report["training_input"]["basic"]["ratio"] > 0
    assert [p["factor"] for p in report["scaling"]["points"]] == [1, 2, 4]
    assert report["end_to_end"]["skipped"] is True
    assert "| Target |" in (out / "bench.md").read_text()
