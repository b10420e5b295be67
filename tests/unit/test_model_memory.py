"""What bounds a model process's memory (issue 32): the classifier's forward pass is the traced
graph, at most FORWARD_BATCH images a call, with the eager call's probabilities; the scoring task
and the server cap glibc's malloc arenas and TensorFlow's inter-op pool, unless the environment
says otherwise. The measurements are in docs/scoring.md#speed-and-memory and docs/serving.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bound_in_a_fresh_process(env: dict[str, str], inter_op: int) -> tuple[dict, str | None]:
    code = (
        "import json, os\n"
        "from components.core.inference.runtime import bound_model_memory\n"
        f"done = bound_model_memory({inter_op})\n"
        "print(json.dumps([done, os.environ.get('TF_NUM_INTEROP_THREADS')]))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "TF_NUM_INTEROP_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, check=True
    )
    done, inter = json.loads(out.stdout.strip().splitlines()[-1])
    return done, inter


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_arenas_and_the_inter_op_pool_are_capped_when_the_environment_is_silent():
    done, inter = _bound_in_a_fresh_process({}, 1)
    assert done == {"MALLOC_ARENA_MAX": 2, "TF_NUM_INTEROP_THREADS": 1} and inter == "1"


def test_an_operators_settings_win():
    done, inter = _bound_in_a_fresh_process({"MALLOC_ARENA_MAX": "8", "TF_NUM_INTEROP_THREADS": "4"}, 1)
    assert done == {} and inter == "4"


def test_the_scoring_task_and_the_server_bound_memory_before_they_load_a_model():
    score = (ROOT / "components/core/steps/score.py").read_text()
    body = score.split("def run_score_shard", 1)[1]
    assert body.index("bound_model_memory(SCORING_INTER_OP_THREADS)") < body.index("Predictor.load")
    server = (ROOT / "components/core/serving/server.py").read_text()
    body = server.split("\ndef serve(", 1)[1]
    assert body.index("bound_model_memory(SERVING_INTER_OP_THREADS)") < body.index("Predictor.load")


def test_predict_arrays_runs_the_traced_graph_in_slices_with_the_eager_probabilities(monkeypatch):
    import keras

    from components.core.decision import DecisionPolicy
    from components.core.inference import predictor as predictor_module

    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    calls: list[int] = []
    traced = predictor_module.compiled_forward(model)

    def forward(images):
        calls.append(len(images))
        return traced(images)

    monkeypatch.setattr(predictor_module, "FORWARD_BATCH", 3)
    monkeypatch.setattr(predictor_module, "compiled_forward", lambda m: forward if m is model else None)
    p = predictor_module.Predictor(
        load_model=lambda: model,
        threshold=0.5,
        image_size=16,
        model_name="m",
        model_version="1",
        policy=DecisionPolicy.__new__(DecisionPolicy),  # not consulted by predict_arrays
    )
    images = np.random.default_rng(0).integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    probs = p.predict_arrays(images)
    assert calls == [3, 3, 1]  # never more than FORWARD_BATCH images into TensorFlow at once
    np.testing.assert_allclose(probs, np.asarray(model(images, training=False)).reshape(-1), atol=1e-6)
    assert p.predict_arrays(images[:0]).shape == (0,)
    p.predict_arrays(images[:2])
    assert calls == [3, 3, 1, 2]  # traced once, reused
