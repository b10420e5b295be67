"""The serving benchmark's harness (``python -m benchmarks.serving``) on a tiny model and SYNTHETIC
images: every row runs over both protocols and the reports are written. Marked ``benchmark``:
excluded from the default run (``pytest -m benchmark benchmarks/tests``). It asserts no timings."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.benchmark


@pytest.mark.timeout(900)
def test_serving_benchmark_measures_raw_and_both_protocols(tmp_path):
    from benchmarks.serving import main
    from components.core.data import dataset
    from components.core.data.demo_data import write_demo_data
    from tests.support.serving_helpers import train_tiny_model

    raw = tmp_path / "raw"
    write_demo_data(str(raw), train_per_class=24, test_per_class=8, size=48, seed=1)
    shards = tmp_path / "shards"
    dataset.preprocess(str(raw), {s: str(shards / s) for s in dataset.OUTPUT_SPLITS}, image_size=32, val_fraction=0.25)
    model = train_tiny_model(shards, tmp_path / "model")
    out = tmp_path / "bench"
    assert (
        main(
            [
                "--model-uri",
                str(model),
                "--data",
                str(raw),
                "--requests",
                "24",
                "--clients",
                "1,4",
                "--batch",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "serving.json").read_text())
    assert report["raw"]["images"] == 48 and len(report["raw"]["runs_images_per_s"]) == 2  # before and after
    rows = {(r["mode"], r["clients"]) for r in report["results"]}
    assert rows == {(f"server {p}", c) for p in ("http", "grpc") for c in (1, 4)}
    assert all(r["images"] == 48 and r["p50_ms"] <= r["p99_ms"] for r in report["results"])  # 2 blocks of 24
    assert set(report["ratio_at_4_clients"]) == {"server http", "server grpc"}
    assert "| server grpc | 4 |" in (out / "serving.md").read_text()
    memory = report["server_memory"]  # the server's peak after one request of the most images one may hold
    assert memory["largest_request_images"] == 32 and memory["peak_rss_mb"] >= memory["peak_rss_mb_after_rows"] > 0
    assert memory["memory_limit"] == "2Gi" and "server peak RSS" in (out / "serving.md").read_text()
