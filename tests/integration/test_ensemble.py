"""The fan-out's average as a candidate, with probe models whose every score is known by hand
(tests/support/probe_data.py): A reads the red channel, B the green one, and each is unsure
(p near 0.5, on the wrong side) exactly where the other is sure. Alone each gets 3 of 4 image
kinds right at any threshold; their mean separates all four. So the ensemble wins on validation,
is built, registered, loaded by the predictor (from the registry and from its Model artifact),
served from the registry by `skin-cancer serve` (V2 inference, /predict, /explain, the model card)
and explained by Grad-CAM, with the same scores and decisions as the model built in this process.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from components.core.registry import tracking
from components.core.settings import CLASSES
from tests.support.probe_data import log_model_run, write_split

# (R, G) per image kind, and its label: A = sigmoid(-20 R/255 + 10), B the same on G.
KINDS = {
    "malignant, A unsure": ((130, 20), 1),  # A 0.45 (wrong side), B 1.00
    "malignant, B unsure": ((20, 130), 1),  # A 1.00, B 0.45
    "benign, A unsure": ((125, 240), 0),  # A 0.55 (wrong side), B 0.00
    "benign, B unsure": ((240, 125), 0),  # A 0.00, B 0.55
}
PER_KIND = 10  # 20 per class: the fewest for which 95 % conformal sets can hold one class (19)
SIZE = 32  # px: the server refers a file under 32 px as too small to judge


def probe_image(r: int, g: int, seed: int) -> np.ndarray:
    """Red ``r`` and green ``g`` throughout; in blue, the channel neither model reads, noise of
    its own per image (``seed``), so no image is a flat frame (referred as blank) and the
    out-of-scope limit, set on validation images, spans how images of one kind differ."""
    pixels = np.empty((SIZE, SIZE, 3), np.uint8)
    pixels[..., 0], pixels[..., 1] = r, g
    pixels[..., 2] = np.random.default_rng(seed).integers(60, 200, (SIZE, SIZE))
    return pixels


def probe_images(offset: int, lean: int = 0) -> list[tuple[str, np.ndarray, int]]:
    """``PER_KIND`` images of each kind. ``lean``: levels the unsure member's channel moves
    toward the right side. The threshold, chosen on validation, is exactly one kind's score (and
    so are the conformal sets' limits): an image of that kind would be decided by the last bit
    of a float, which one forward pass may give and another not."""
    out = []
    for k, ((r, g), label) in enumerate(KINDS.values()):
        rg = [r, g]
        unsure = 0 if abs(r - 128) < abs(g - 128) else 1
        rg[unsure] += -lean if label else lean  # a member's p falls as its channel rises
        for i in range(PER_KIND):
            out.append((f"k{k}-{i}", probe_image(*rg, offset + PER_KIND * k + i), label))
    return out


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    from components.core.data.dataset import SplitArrays

    root = tmp_path_factory.mktemp("ensemble-probe")
    paths = {
        split: write_split(root, split, probe_images(len(KINDS) * PER_KIND * n))
        for n, split in enumerate(("train", "val", "test"))
    }
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
    summary = log_model_run(model, experiment, f"probe-{'RG'[reads]}", image_size=SIZE, threshold=threshold)
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
    served = probe_images(200, lean=2)
    blobs = [_png(x) for _, x, _ in served]
    pixels = np.stack([decode_image(b, SIZE) for b in blobs])
    # In this process: the members' own scores averaged, decided by the registered policy.
    expected_p = (np.asarray(reader(0)(pixels)).reshape(-1) + np.asarray(reader(1)(pixels)).reshape(-1)) / 2
    sizes = [(SIZE, SIZE)] * len(pixels)  # the files' own sizes, as the server reads them
    expected = [d.to_dict() for d in registered.policy.decide_images(pixels, expected_p, sizes)]
    labels = [label for _, _, label in served]
    # Each decided as its kind, or referred as unlike the training images (the scope limit lets
    # about 2 % of images like the validation ones through: here 1 of 40, score 1.6, the next 0.94).
    assert all(
        (d["decision"], d["refer_reason"]) in ((CLASSES[y], None), ("refer", "out_of_scope"))
        for d, y in zip(expected, labels)
    )
    assert sorted(d["decision"] for d in expected) == ["benign"] * 19 + ["malignant"] * 20 + ["refer"]
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

    _check_served(f"models:/{name}/1", mlflow_server, tmp_path / "server.log", registered, blobs, expected_p, expected)


def _check_served(model_uri, mlflow_uri, log, registered, blobs, expected_p, expected):
    """`skin-cancer serve` (KServe's model server, in its own process) on the registered version:
    its metadata, V2 inference, /predict, /explain and the model card answer what the ensemble
    gives in this process; a flat grey frame is referred as out of scope by both."""
    import requests

    from components.core.deploy import smoke
    from tests.support.serving_helpers import Server, outputs, post_file, v2_bytes

    grey = smoke.out_of_scope_probe()
    refused = registered.predict_bytes(grey)
    assert (refused["decision"], refused["refer_reason"]) == ("refer", "out_of_scope")
    blobs = [*blobs, grey]
    expected_p = [*map(float, expected_p), refused["p_malignant"]]
    pairs = [(d["decision"], d["refer_reason"]) for d in [*expected, refused]]
    name, version = registered.model_name, registered.model_version

    srv = Server(
        ["--model-uri", model_uri, "--max-batch", str(len(blobs))], log, env={"MLFLOW_TRACKING_URI": mlflow_uri}
    )
    try:
        meta = requests.get(f"{srv.url}/v2/models/{name}", timeout=30).json()
        assert meta["versions"] == [version] and meta["parameters"]["image_size"] == SIZE
        assert meta["parameters"]["threshold"] == pytest.approx(registered.threshold)
        assert meta["parameters"]["decision_policy"] == json.loads(json.dumps(registered.policy.summary()))

        # V2: every image in one request (one batched forward pass through both members).
        r = requests.post(f"{srv.url}/v2/models/{name}/infer", json=v2_bytes(*blobs, id="ensemble"), timeout=60)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert (answer["id"], answer["model_name"], answer["model_version"]) == ("ensemble", name, version)
        out = outputs(answer)
        np.testing.assert_allclose(out["p_malignant"]["data"], expected_p, atol=1e-5)
        assert list(zip(out["decision"]["data"], out["refer_reason"]["data"])) == [(d, r or "") for d, r in pairs]

        # /predict: the upload route the page uses, one image a request.
        bodies = []
        for i, blob in enumerate(blobs):
            u = post_file(srv.url, blob, filename=f"{i}.png", content_type="image/png")
            assert u.status_code == 200, u.text
            bodies.append(u.json())
        np.testing.assert_allclose([b["p_malignant"] for b in bodies], expected_p, atol=1e-5)
        assert [(b["decision"], b["refer_reason"]) for b in bodies] == pairs
        assert {(b["model_name"], b["model_version"]) for b in bodies} == {(name, version)}

        # /explain: Grad-CAM over both members' feature maps; none for the out-of-scope frame.
        for i in (0, len(blobs) - 2):  # a malignant and a benign image
            r = post_file(srv.url, blobs[i], filename="lesion.png", content_type="image/png", path="/explain")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
            assert r.headers["x-grad-cam-layer"] == "member_0_reads1/identity + member_1_reads0/identity"
            assert float(r.headers["x-p-malignant"]) == pytest.approx(expected_p[i], abs=1e-5)
            assert (r.headers["x-decision"], r.headers["x-refer-reason"]) == (pairs[i][0], "")
        r = post_file(srv.url, grey, filename="grey.png", content_type="image/png", path="/explain")
        assert r.status_code == 422 and "does not look like a dermoscopic image" in r.json()["error"]

        card = requests.get(f"{srv.url}/model-card.md", timeout=30)
        assert card.status_code == 200 and "Ensemble: the mean" in card.text
    finally:
        srv.stop()


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
