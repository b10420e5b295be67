"""Monitoring (components/core/scoring/drift.py): a class-mixed batch passes the input check, the
same images with colour and brightness shifted fail it, a batch of one class moves the
prediction signal and not the input one. On the SYNTHETIC demo data with the tiny model, always;
on the real images (input signal) when they are present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.core.scoring import drift


def shifted(pixels: np.ndarray) -> np.ndarray:
    """Another camera: warmer colour balance and brighter."""
    return np.clip(pixels.astype(np.float32) * [1.25, 1.0, 0.8] + 20, 0, 255).astype(np.uint8)


def batch_signals(predictor, axes, reference, pixels, min_images=30) -> dict[str, dict]:
    features = predictor.imagenet_features(pixels)
    out = predictor.predict_pixels(pixels, imagenet=features)
    kinds = drift.decision_kinds([o["decision"] for o in out], [o["refer_reason"] for o in out])
    return {
        s["signal"]: s
        for s in (
            drift.input_drift(
                reference, axes.inputs(pixels, features), [o["label"] for o in out], min_images=min_images
            ),
            drift.prediction_drift(reference.p, np.array([o["p_malignant"] for o in out]), min_images=min_images),
            drift.decision_drift(reference.kinds, kinds, min_images=min_images),
        )
    }


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """A small model that tells the SYNTHETIC classes apart (the basic CNN, a few epochs at 32 px),
    the reference stored with it in training (its validation split as it saw it), a held-out test
    split (40 per class) and the validation split's folder."""
    from components.core.data import dataset
    from components.core.data.demo_data import write_demo_data
    from components.core.inference.model_dir import write_model_dir
    from components.core.inference.predictor import Predictor
    from components.core.modeling.training import TrainConfig, train_model

    root = tmp_path_factory.mktemp("drift")
    write_demo_data(str(root / "raw"), train_per_class=80, test_per_class=40, size=48, seed=3)
    splits = {s: str(root / "pp" / s) for s in dataset.OUTPUT_SPLITS}
    dataset.preprocess(str(root / "raw"), splits, image_size=32, val_fraction=0.4)
    cfg = TrainConfig(family="basic", epochs=8, batch_size=16, image_size=32, width=8, augment=False, seed=0)
    result = train_model(cfg, *dataset.open_splits(*(splits[s] for s in ("train", "val", "test"))))
    write_model_dir(
        str(root / "model"),
        result.model,
        {"threshold": result.threshold, "image_size": 32, "family": "basic", "mlflow_run_id": "drift-test"},
        result.policy.files(),
    )
    predictor = Predictor.load(str(root / "model"))
    axes = drift.InputAxes.fit(predictor.policy.scope.reference)
    reference = drift.Reference.from_policy(predictor.policy)
    test = dataset.SplitArrays(splits["test"])
    return predictor, axes, reference, test.gather(np.arange(len(test))), np.asarray(test.labels), splits["val"]


def test_the_reference_stored_in_training_is_the_validation_split_scored_again(monitored):
    """Training stores the reference from what fitting the policy computed; scoring the validation
    split again with the loaded model and policy gives the same numbers."""
    predictor, axes, stored, *_, val_path = monitored
    again = drift.Reference.from_split(predictor, val_path, axes)
    assert len(stored.p) == len(again.p) > 30
    np.testing.assert_allclose(stored.p, again.p, atol=1e-5)
    np.testing.assert_allclose(stored.inputs, again.inputs, atol=1e-4)
    assert stored.labels == again.labels and stored.kinds == again.kinds
    assert set(stored.kinds) <= set(drift.DECISION_KINDS)


def test_a_model_without_a_stored_reference_has_none(monitored):
    from dataclasses import replace

    assert drift.Reference.from_policy(replace(monitored[0].policy, monitoring=None)) is None


def test_mixed_batch_passes_and_shifted_colour_fails_the_input_check(monitored):
    predictor, axes, reference, pixels, *_ = monitored
    assert batch_signals(predictor, axes, reference, pixels)["input"]["verdict"] == drift.NO_DRIFT
    moved = batch_signals(predictor, axes, reference, shifted(pixels))["input"]
    assert moved["verdict"] == drift.DRIFT and moved["p_value"] < 1e-3


def test_one_class_batch_moves_the_prediction_signal(monitored):
    predictor, axes, reference, pixels, labels, _ = monitored
    mixed = batch_signals(predictor, axes, reference, pixels)
    one = batch_signals(predictor, axes, reference, pixels[labels == 1])
    assert mixed["prediction"]["verdict"] == drift.NO_DRIFT
    assert one["prediction"]["verdict"] == drift.DRIFT
    assert one["prediction"]["mean_p"] > mixed["prediction"]["mean_p"]
    assert one["decision"]["verdict"] == drift.DRIFT
    assert one["input"]["verdict"] == drift.NO_DRIFT  # the images are like the reference's malignant ones


def test_too_few_images_to_judge(monitored):
    predictor, axes, reference, pixels, *_ = monitored
    few = batch_signals(predictor, axes, reference, shifted(pixels[:10]))
    assert {s["verdict"] for s in few.values()} == {drift.TOO_FEW}


def test_an_empty_run_is_too_few_to_judge(monitored):
    _, _, reference, *_ = monitored
    verdicts = [
        drift.input_drift(reference, np.zeros((0, 14)), []),
        drift.prediction_drift(reference.p, []),
        drift.decision_drift(reference.kinds, []),
    ]
    assert [v["verdict"] for v in verdicts] == [drift.TOO_FEW] * 3


def test_no_reference_says_so():
    assert drift.input_drift(None, np.zeros((3, 14)), ["benign"] * 3)["verdict"] == drift.NO_REFERENCE
    assert drift.prediction_drift(None, np.zeros(3))["verdict"] == drift.NO_REFERENCE
    assert drift.decision_drift(None, ["benign"])["verdict"] == drift.NO_REFERENCE


def test_decision_mix_chi_square_sees_a_changed_mix():
    ref = ["benign"] * 60 + ["malignant"] * 30 + ["uncertain"] * 10
    assert drift.decision_drift(ref, ref[::2])["verdict"] == drift.NO_DRIFT
    assert drift.decision_drift(ref, ["malignant"] * 40 + ["uncertain"] * 10)["verdict"] == drift.DRIFT


# ---- the real images: the input signal (there is no model trained on them in the test suite, so
# the strata are the true classes, standing in for the model's labels) ------------------------
REAL_SIZE = 128


def _real(root: Path, split: str, cls: str, n: int, rng) -> np.ndarray:
    from components.core.data.images import decode_image

    files = sorted((root / split / cls).glob("*.jpg"))
    return np.stack([decode_image(files[i].read_bytes(), REAL_SIZE) for i in rng.choice(len(files), n, replace=False)])


def test_real_images_mixed_pass_shifted_fail_one_class_pass(real_data):
    from components.core.decision.features import imagenet_features

    rng = np.random.default_rng(0)
    ref_px = np.concatenate([_real(real_data, "train", c, 150, rng) for c in ("benign", "malignant")])
    ref_features = imagenet_features(ref_px)
    axes = drift.InputAxes.fit(ref_features)
    reference = drift.Reference(
        axes.inputs(ref_px, ref_features), ["benign"] * 150 + ["malignant"] * 150, np.zeros(300), []
    )
    benign, malignant = (_real(real_data, "test", c, 60, rng) for c in ("benign", "malignant"))
    mixed = np.concatenate([benign[:30], malignant[:30]])
    mixed_labels = ["benign"] * 30 + ["malignant"] * 30

    def check(pixels, labels):
        return drift.input_drift(reference, axes.inputs(pixels, imagenet_features(pixels)), labels)

    assert check(mixed, mixed_labels)["verdict"] == drift.NO_DRIFT
    assert check(shifted(mixed), mixed_labels)["verdict"] == drift.DRIFT
    assert check(benign, ["benign"] * 60)["verdict"] == drift.NO_DRIFT
    assert check(malignant, ["malignant"] * 60)["verdict"] == drift.NO_DRIFT
    # Why the strata: pooled (every reference image against a one-class batch), the same benign
    # images read as drift; the input features do differ between the classes on real images.
    pooled = drift.Reference(reference.inputs, ["any"] * 300, reference.p, [])
    assert (
        drift.input_drift(pooled, axes.inputs(benign, imagenet_features(benign)), ["any"] * 60)["verdict"]
        == drift.DRIFT
    )


@pytest.mark.parametrize(
    "drifted,retrain,review",
    [
        ((), [], []),
        (("prediction",), [], ["prediction drift"]),  # outputs moved, inputs did not: a person looks
        (("decision",), [], ["decision drift"]),
        (("prediction", "decision"), [], ["prediction drift", "decision drift"]),
        (("input",), ["input drift"], []),  # what comes in changed: retrain
        (("input", "prediction"), ["input drift"], ["prediction drift"]),
    ],
)
def test_output_drift_without_input_drift_asks_for_review_not_retraining(drifted, retrain, review):
    from components.core.scoring import drift
    from components.core.scoring.run import run_metrics, summarise

    signals = [
        {"signal": name, "verdict": drift.DRIFT if name in drifted else "no drift", "p_value": 0.5}
        for name in ("input", "prediction", "decision")
    ]
    summary = summarise([], 0, signals, None)
    assert (summary["retrain_reasons"], summary["review_reasons"]) == (retrain, review)
    assert (summary["retrain_recommended"], summary["review_recommended"]) == (bool(retrain), bool(review))
    assert run_metrics(summary)["review_recommended"] == float(bool(review))
