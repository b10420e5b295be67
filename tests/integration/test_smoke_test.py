"""The smoke test (components/smoke_test.py, core/deploy/smoke.py) against the local server, and
against a server that answers wrongly."""

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from components.core.data.dataset import CLASSES
from tests.support.http_stub import JsonHandler
from tests.support.serving_helpers import (
    MODEL_NAME,
    MODEL_VERSION,
)

# The model and server fixtures (tests/support/serving_fixtures.py): one server per worker.
pytest_plugins = ["tests.support.serving_fixtures"]


def test_smoke_test_component_passes_against_the_server(server, demo_raw, kfp_local, reference):
    from components.core.data import storage
    from components.smoke_test import smoke_test

    task = smoke_test(url=server.url, model_name=MODEL_NAME, data_uri=str(demo_raw), samples_per_class=2)
    report = json.loads(task.outputs["Output"])
    assert report["images"] == 4 and report["model_version"] == MODEL_VERSION
    assert {r["expected"] for r in report["results"]} == set(CLASSES)
    for r in report["results"]:  # each answer is the model's for that very image
        expected = reference.predict_bytes(storage.read_bytes(r["uri"]))
        assert r["p_malignant"] == pytest.approx(expected["p_malignant"], abs=1e-5), r["uri"]
        assert r["label"] == expected["label"], r["uri"]


def test_smoke_test_fails_on_a_wrong_model_name(server, demo_raw):
    from components.core.deploy import smoke

    samples = smoke.load_samples(str(demo_raw), 1)
    with pytest.raises(smoke.SmokeTestError, match="HTTP 404"):
        smoke.run_smoke_test(server.url, "another-model", samples, ready_timeout=5)


class _LyingServer:
    """Answers every V2 infer with ``answer``: a broken model server."""

    def __init__(self, answer: dict):
        class Handler(JsonHandler):
            def do_GET(self):
                self.send_json(200, {"ready": True})

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_json(200, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _decided(label: str, p: float) -> dict:
    """A well-formed single answer that decides ``label`` whatever the image."""
    return {
        "model_name": MODEL_NAME,
        "parameters": {"threshold": 0.5},
        "outputs": [
            {"name": "p_malignant", "datatype": "FP32", "shape": [1], "data": [p]},
            {"name": "label", "datatype": "BYTES", "shape": [1], "data": [label]},
            {"name": "decision", "datatype": "BYTES", "shape": [1], "data": [label]},
            {"name": "refer_reason", "datatype": "BYTES", "shape": [1], "data": [""]},
        ],
    }


@pytest.mark.parametrize(
    "answer,message",
    [
        # Well-formed answers that never refer: the flat grey probe comes back benign.
        (_decided("benign", 0.2), r"out-of-scope probe \(a flat grey frame\): answered 'benign'"),
        (
            {**_decided("benign", 0.2), "outputs": _decided("benign", 0.2)["outputs"][:2]},
            "must include decision and refer_reason",
        ),
        (
            {
                **_decided("benign", 0.2),
                "outputs": [
                    *_decided("benign", 0.2)["outputs"][:2],
                    {"name": "decision", "datatype": "BYTES", "shape": [1], "data": ["refer"]},
                    {"name": "refer_reason", "datatype": "BYTES", "shape": [1], "data": [""]},
                ],
            },
            "decision 'refer' with refer_reason ''",
        ),
        (
            {
                **_decided("benign", 0.2),
                "outputs": [
                    *_decided("benign", 0.2)["outputs"][:2],
                    {"name": "decision", "datatype": "BYTES", "shape": [1], "data": ["malignant"]},
                    {"name": "refer_reason", "datatype": "BYTES", "shape": [1], "data": [""]},
                ],
            },
            "decision 'malignant' but label 'benign'",
        ),
        (
            {
                "model_name": MODEL_NAME,
                "outputs": [
                    {"name": "p_malignant", "datatype": "FP32", "shape": [1], "data": [1.5]},
                    {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["malignant"]},
                ],
            },
            "not a probability",
        ),
        (
            {
                "model_name": MODEL_NAME,
                "outputs": [
                    {"name": "p_malignant", "datatype": "FP32", "shape": [1], "data": [float("nan")]},
                    {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["benign"]},
                ],
            },
            "not a probability",
        ),
        (
            {
                "model_name": MODEL_NAME,
                "outputs": [
                    {"name": "p_malignant", "datatype": "FP32", "shape": [1], "data": [0.2]},
                    {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["mole"]},
                ],
            },
            "not one of",
        ),
        (
            {
                "model_name": MODEL_NAME,
                "outputs": [{"name": "scores", "datatype": "FP32", "shape": [1], "data": [0.2]}],
            },
            "must include p_malignant",
        ),
        ({"model_name": MODEL_NAME, "outputs": "nope"}, "must include"),
        (
            {
                "model_name": MODEL_NAME,
                "parameters": {"threshold": 0.5},
                "outputs": [
                    {"name": "p_malignant", "datatype": "FP32", "shape": [1], "data": [0.9]},
                    {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["benign"]},
                ],
            },
            "disagrees",
        ),
        # A served model that states no threshold is refused: nothing may assume 0.5.
        (
            {
                "model_name": MODEL_NAME,
                "outputs": [
                    {"name": "p_malignant", "datatype": "FP32", "shape": [1], "data": [0.9]},
                    {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["malignant"]},
                ],
            },
            "states no decision threshold",
        ),
    ],
)
def test_smoke_test_fails_on_a_malformed_answer(demo_raw, answer, message):
    from components.core.deploy import smoke

    liar = _LyingServer(answer)
    try:
        with pytest.raises(smoke.SmokeTestError, match=message):
            smoke.run_smoke_test(liar.url, MODEL_NAME, smoke.load_samples(str(demo_raw), 1), ready_timeout=5)
    finally:
        liar.server.shutdown()
