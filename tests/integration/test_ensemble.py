"""The fan-out's average as a candidate, with probe models whose every score is known by hand
(tests/support/probe_data.py): A reads the red channel, B the green one, and each is unsure
(p near 0.5, on the wrong side) exactly where the other is sure. Alone each gets 3 of 4 image
kinds right at any threshold; their mean separates all four. So the ensemble wins on validation,
is built, registered, loaded by the predictor (from the registry and from its Model artifact) and
explained by Grad-CAM, with the same decisions as the model built in this process.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from components.core.registry import tracking
from tests.support.probe_data import log_model_run, uniform, write_split

# (R, G) per image kind, and its label: A = sigmoid(-20 R/255 + 10), B the same on G.
KINDS = {
    "malignant, A unsure": ((130, 20), 1),  # A 0.45 (wrong side), B 1.00
    "malignant, B unsure": ((20, 130), 1),  # A 1.00, B 0.45
    "benign, A unsure": ((125, 240), 0),  # A 0.55 (wrong side), B 0.00
    "benign, B unsure": ((240, 125), 0),  # A 0.00, B 0.55
}
PER_KIND = 8


def probe_images(offset: int) -> list[tuple[str, np.ndarray, int]]:
    out = []
    for k, ((r, g), label) in enumerate(KINDS.values()):
        for i in range(PER_KIND):
            out.append((f"k{k}-{i}", uniform((r, g, 128), size=16, tag=(2, offset + 8 * k + i)), label))
    return out


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    from components.core.data.dataset import SplitArrays

    root = tmp_path_factory.mktemp("ensemble-probe")
    paths = {split: write_split(root, split, probe_images(40 * n)) for n, split in enumerate(("train", "val", "test"))}
    return paths, {split: SplitArrays(path) for split, path in paths.items()}


def reader(channel: int):
    """sigmoid(-20 mean(channel / 255) + 10) through an identity 1x1 convolution: the same score as
    a probe model, with a feature map for Grad-CAM."""
    import keras

    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    conv = keras.layers.Conv2D(3, 1, use_bias=False, name="identity")
    x = keras.layers.GlobalAveragePooling2D()(conv(x))
    head = keras.layers.Dense(1, activation="sigmoid", name="p_malignant")
    model = keras.Model(inputs, head(x), name=f"reads{channel}")
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3)])
    weights = np.zeros((3, 1), np.float32)
    weights[channel] = -20.0
    head.set_weights([weights, np.asarray([10.0], np.float32)])
    return model


def member(reads: int, experiment: str, splits: dict):
    """A probe model reading channel ``reads``, logged as a training run logs one: the model, its
    scores, its decision policy and what it trained on."""
    import mlflow

    from components.core.decision import DecisionPolicy
    from components.core.decision.features import split_features
    from components.core.evaluation.metrics import choose_threshold, classification_metrics
    from components.core.modeling.training import predict_proba

    model = reader(reads)
    train, val, test = splits["train"], splits["val"], splits["test"]
    p_val, p_test = predict_proba(model, val), predict_proba(model, test)
    threshold = choose_threshold(val.labels, p_val, 0.85)
    summary = log_model_run(model, experiment, f"probe-{'RG'[reads]}", image_size=16, threshold=threshold)
    policy = DecisionPolicy.fit(threshold, val.labels, p_val, split_features(train), split_features(val), 0.9, 0.02)
    with mlflow.start_run(run_id=summary.run_id):
        tracking.log_policy_files(policy)
        tracking.log_json({"threshold": threshold, "val": p_val.tolist(), "test": p_test.tolist()}, "scores.json")
        tracking.log_json({"sha1": [s["sha1"] for s in train.manifest["sources"]]}, tracking.TRAINED_ON_ARTIFACT)
    summary.val = classification_metrics(val.labels, p_val, threshold)
    summary.test = classification_metrics(test.labels, p_test, threshold)
    summary.decision = policy.summary()
    return summary


def test_an_average_that_wins_is_registered_served_and_explained(mlflow_server, splits, tmp_path, monkeypatch):
    import json

    from components.core.data.images import decode_image
    from components.core.inference import gradcam
    from components.core.inference.predictor import Predictor
    from components.core.modeling.ensemble import members_of
    from components.core.steps import select

    monkeypatch.setattr("components.core.evaluation.subgroups.N_BOOT", 10)
    paths, arrays = splits
    experiment = tracking.setup(mlflow_server, "test-ensemble")
    a, b = member(0, experiment, arrays), member(1, experiment, arrays)
    assert (a.val["accuracy"], b.val["accuracy"]) == (0.75, 0.75)  # each misses one kind in four

    name = f"ensemble-{uuid.uuid4().hex[:6]}"
    out = select.run_select_and_register(
        results=[a.to_json(), b.to_json()],
        val_path=paths["val"],
        test_path=paths["test"],
        mlflow_tracking_uri=mlflow_server,
        experiment_name="test-ensemble",
        registered_model_name=name,
        data_fingerprint="probe",
        card_path=str(tmp_path / "card.md"),
        ensemble_path=str(tmp_path / "ensemble"),
        ensemble_uri=str(tmp_path / "ensemble"),
    )
    summary = json.loads(out.summary_json)
    # Equal alone, so ranked by name (selection.rank_key): G first.
    assert summary["winner"] == "ensemble(probe-G+probe-R)" and out.model_version == "1"
    ensemble_row = next(m for m in summary["models"] if m["family"] == "ensemble")
    assert ensemble_row["val"]["accuracy"] == 1.0 and ensemble_row["test"]["accuracy"] == 1.0
    assert out.model_artifact_uri == str(tmp_path / "ensemble")
    card = (tmp_path / "card.md").read_text()
    assert f"`probe-R` (probe, MLflow run `{a.run_id}`)" in card and "Ensemble: the mean" in card

    registered = Predictor.load(f"models:/{name}/1")
    from_artifact = Predictor.load(str(tmp_path / "ensemble"))
    assert [m.name for m in members_of(registered.model)] == ["member_0_reads1", "member_1_reads0"]
    images = [pixels for _, pixels, _ in probe_images(200)]
    pixels = np.stack([decode_image(_png(x), 16) for x in images])
    # In this process: the members' own scores averaged, decided by the registered policy.
    expected_p = (np.asarray(reader(0)(pixels)).reshape(-1) + np.asarray(reader(1)(pixels)).reshape(-1)) / 2
    expected = [d.to_dict() for d in registered.policy.decide_images(pixels, expected_p)]
    labels = [label for _, _, label in probe_images(200)]
    for predictor in (registered, from_artifact):
        results = predictor.predict_pixels(pixels)
        np.testing.assert_allclose([r["p_malignant"] for r in results], expected_p, atol=1e-5)
        assert all(r["label"] == ("malignant" if y else "benign") for r, y in zip(results, labels))
        assert [(r["decision"], r["refer_reason"]) for r in results] == [
            (d["decision"], d["refer_reason"]) for d in expected
        ]
    explainer = gradcam.for_model(registered.model)
    heat, p = explainer.heatmap(pixels[0])
    assert heat.ndim == 2 and 0.0 <= heat.min() and heat.max() <= 1.0
    assert p == pytest.approx(expected_p[0], abs=1e-5)
    assert explainer.target.name == "member_0_reads1/identity + member_1_reads0/identity"


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
