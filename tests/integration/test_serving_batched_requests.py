"""Adaptive batching in the running server: requests that arrive together share a forward pass."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.serving_helpers import (
    INFER,
    Server,
    metric_total,
    metrics_of,
    outputs,
    v2_bytes,
)

# The model and server fixtures (tests/support/serving_fixtures.py): one server per worker.
pytest_plugins = ["tests.support.serving_fixtures"]


def test_requests_that_arrive_together_share_a_forward_pass(tiny_model_dir, images, reference, tmp_path):
    """Adaptive batching, on a server that waits up to 1 s for company: 8 clients at once, one of
    them with a file that is not an image. Each good request gets its own image's answer, the bad
    one alone gets a 400, and the 7 good ones share fewer forward passes than requests."""
    srv = Server.tiny(
        tiny_model_dir,
        tmp_path / "server.log",
        # KServe's flags, under KServe's names, after ours
        ["--max-latency-ms", "1000", "--max-batch-size", "8", "--max_asyncio_workers", "2", "--max_threads", "2"],
    )
    try:
        files = [*images["benign"][:4], *images["malignant"][:3]]
        bodies = [p.read_bytes() for p in files] + [b"GIF89a not an image"]
        expected = [reference.predict_bytes(b)["p_malignant"] for b in bodies[:-1]]
        before = metrics_of(srv.url)
        barrier = threading.Barrier(len(bodies))

        def one(body: bytes):
            barrier.wait()
            return requests.post(srv.url + INFER, json=v2_bytes(body), timeout=120)

        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            answers = list(pool.map(one, bodies))
        for r, p in zip(answers[:-1], expected):
            assert r.status_code == 200, r.text
            assert outputs(r.json())["p_malignant"]["data"][0] == pytest.approx(p, abs=1e-5)
        assert answers[-1].status_code == 400 and "not an image" in answers[-1].json()["error"]
        after = metrics_of(srv.url)
        passes = metric_total(after, "skin_cancer_batch_requests_count") - metric_total(
            before, "skin_cancer_batch_requests_count"
        )
        served = metric_total(after, "skin_cancer_batch_requests_sum") - metric_total(
            before, "skin_cancer_batch_requests_sum"
        )
        assert served == 7 and passes < 7, (served, passes)
    finally:
        srv.stop()
