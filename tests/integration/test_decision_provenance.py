"""Where the decision comes from: the stored threshold, the validation metrics and the temperature
are computed on the VALIDATION split (never on test), worked out by hand for probe models.

Training is replaced by a probe model (``training.fit_one`` returns it), so everything after
fitting runs for real: calibration, test-time augmentation, the threshold, the metrics, and for
the threshold the whole train step (MLflow run, logged model metadata, ``model.json``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from components.core.data.dataset import open_splits
from components.core.evaluation import subgroups
from components.core.modeling import training
from tests.support.probe_data import linear_model, uniform, write_split

HISTORY = {"loss": [0.6], "val_loss": [0.65], "accuracy": [0.7], "val_accuracy": [0.6], "auc": [0.7], "val_auc": [0.65]}


def fit_returns(monkeypatch, model) -> None:
    """Training returns ``model`` at once; the rest of train_model runs as it would."""
    monkeypatch.setattr(training, "fit_one", lambda cfg, train, val, on_epoch=None, **kw: (model, dict(HISTORY)))


# --- the threshold and the validation metrics -----------------------------------------------------

# Red levels: the probe model's score is R / 255 (red 153 -> 0.6). Validation and test differ,
# so a threshold chosen on the wrong split is a different number.
VAL_RED = {1: [230, 204, 153, 102], 0: [179, 128, 77, 26]}  # malignant .9 .8 .6 .4; benign .702 .502 .302 .102
TEST_RED = {1: [250, 240, 80, 60], 0: [200, 20, 10, 5]}  # malignant .98 .94 .314 .235; benign .784 .078 .039 .020


def red_split(root: Path, split: str, reds: dict[int, list[int]]) -> str:
    images = [
        (f"{label}-{i}", uniform((red, 0, 0), tag=(2, i + 10 * label)), label)
        for label, levels in reds.items()
        for i, red in enumerate(levels)
    ]
    return write_split(root, split, images)


@pytest.fixture(scope="module")
def red_splits(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("red")
    return [red_split(root, "train", VAL_RED), red_split(root, "val", VAL_RED), red_split(root, "test", TEST_RED)]


def test_the_stored_threshold_and_metrics_come_from_validation(red_splits, mlflow_server, tmp_path, monkeypatch):
    """min_sensitivity 0.5 with 4 malignant validation images: target recall 0.5 + sqrt(0.5 * 0.5 / 4)
    = 0.75, so the threshold is the 3rd highest malignant validation score, 0.6 (on test it would
    be 0.314). At 0.6, validation: TP 3 (.9 .8 .6), FN 1 (.4), FP 1 (.702), TN 3: accuracy 6/8;
    AUC 13/16 (.9 and .8 beat all four benign, .6 beats three, .4 two). Test at 0.6: TP 2, FN 2,
    FP 1, TN 3: accuracy 5/8; AUC 14/16."""
    import mlflow

    from components.core.steps.train import run_train

    fit_returns(monkeypatch, linear_model((1.0, 0.0, 0.0), 0.0, activation=None, name="red"))
    monkeypatch.setattr(subgroups, "N_BOOT", 20)  # eight test images: a few resamples show the wiring
    artifact = SimpleNamespace(path=str(tmp_path / "model"), uri=str(tmp_path / "model"), metadata={})
    summary = json.loads(
        run_train(
            {"family": "basic", "min_sensitivity": 0.5},
            *red_splits,
            {"epochs": 1, "batch_size": 8, "learning_rate": 0.001, "image_size": 8, "seed": 0},
            mlflow_server,
            "test-decision-provenance",
            "",
            model_artifact=artifact,
        )
    )

    assert summary["threshold"] == pytest.approx(0.6, abs=1e-6)
    val, test = summary["val"], summary["test"]
    assert val["confusion_matrix"] == [[3, 1], [1, 3]] and val["n"] == 8
    assert (val["accuracy"], val["sensitivity"], val["specificity"]) == (0.75, 0.75, 0.75)
    assert val["auc"] == pytest.approx(13 / 16)
    assert test["confusion_matrix"] == [[3, 1], [2, 2]]
    assert (test["accuracy"], test["sensitivity"], test["specificity"]) == (0.625, 0.5, 0.75)
    assert test["auc"] == pytest.approx(14 / 16)
    # Stored where serving reads it: the logged model's metadata and model.json beside model.keras.
    assert mlflow.models.get_model_info(summary["model_uri"]).metadata["threshold"] == pytest.approx(0.6, abs=1e-6)
    assert json.loads(Path(artifact.path, "model.json").read_text())["threshold"] == pytest.approx(0.6, abs=1e-6)
    run = mlflow.MlflowClient(mlflow_server).get_run(summary["run_id"])
    assert (run.data.metrics["val_accuracy"], run.data.metrics["test_accuracy"]) == (0.75, 0.625)
    # The evidence per subgroup on test: logged to the run, and named with its hash in the summary.
    evidence = summary["subgroups"]
    assert evidence["uri"] == f"runs:/{summary['run_id']}/subgroups.json", evidence
    logged = Path(mlflow.artifacts.download_artifacts(evidence["uri"], dst_path=str(tmp_path / "dl"))).read_bytes()
    assert hashlib.sha256(logged).hexdigest() == evidence["sha256"]
    report = json.loads(logged)
    assert report["overall"]["n"] == 8 and report["method"]["n_boot"] == 20
    assert report["gate"] == evidence["gate"] and evidence["gate"]["name"] == "subgroup_recall"
    assert "Gate `subgroup_recall`" in evidence["table"]
    assert [a.path for a in mlflow.MlflowClient(mlflow_server).list_artifacts(summary["run_id"], "")].count(
        "subgroups.png"
    ) == 1


# --- the temperature --------------------------------------------------------------------------------

# 4 x 4 images; the corner model reads the red of the top-left pixel only, so each flip view of
# an image reads another corner: (top-left, bottom-left, top-right, bottom-right).
VAL_CORNERS = {
    1: [(255, 230, 200, 255), (220, 180, 255, 240), (90, 200, 60, 150), (255, 255, 240, 10)],
    0: [(0, 30, 20, 60), (40, 10, 90, 0), (200, 170, 230, 220), (30, 0, 10, 50)],
}
TEST_CORNERS = {
    1: [(200, 190, 210, 180), (170, 200, 160, 190), (120, 110, 140, 100)],
    0: [(60, 80, 50, 70), (90, 60, 70, 80), (140, 120, 150, 130)],
}


def corner_model():
    """sigmoid(8 r - 4), r = the red of the top-left pixel / 255."""
    import keras

    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(1, 4, use_bias=False, name="corner")(x)  # a 4 x 4 image gives one value
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="p_malignant")(x)
    model = keras.Model(inputs, out, name="corner")
    kernel = np.zeros((4, 4, 3, 1), dtype=np.float32)
    kernel[0, 0, 0, 0] = 1.0
    model.get_layer("corner").set_weights([kernel])
    model.get_layer("p_malignant").set_weights([np.full((1, 1), 8.0, np.float32), np.array([-4.0], np.float32)])
    return model


def corner_image(corners: tuple[int, int, int, int], tag: int) -> np.ndarray:
    pixels = np.full((4, 4, 3), 128, dtype=np.uint8)
    pixels[1, 1, 1] = tag  # green inside: unique bytes, never read
    (pixels[0, 0, 0], pixels[3, 0, 0], pixels[0, 3, 0], pixels[3, 3, 0]) = corners
    return pixels


def corner_split(root: Path, split: str, corners: dict[int, list[tuple]]) -> str:
    return write_split(
        root,
        split,
        [
            (f"{label}-{i}", corner_image(c, i + 10 * label), label)
            for label, rows in corners.items()
            for i, c in enumerate(rows)
        ],
    )


def best_temperature(corners: dict[int, list[tuple]], views: slice = slice(None)) -> float:
    """By brute force, independent of calibration.py: the T (20,001 log-spaced values in [0.05, 20])
    minimising the log loss of the mean over ``views`` of sigmoid((8 r - 4) / T)."""
    labels = np.array([label for label, rows in corners.items() for _ in rows], dtype=float)
    logits = np.array([c for rows in corners.values() for c in rows], dtype=float)[:, views] / 255 * 8 - 4
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 20001))
    p = (1 / (1 + np.exp(-logits[None, :, :] / grid[:, None, None]))).mean(axis=2)
    p = np.clip(p, 1e-12, 1 - 1e-12)  # no log(0) near T = 0.05; the minimum is well inside the range
    nll = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean(axis=1)
    return float(grid[np.argmin(nll)])


def test_the_temperature_is_fitted_on_validation_over_the_averaged_views(tmp_path, monkeypatch):
    root = tmp_path / "corners"
    splits = open_splits(
        corner_split(root, "train", VAL_CORNERS),
        corner_split(root, "val", VAL_CORNERS),
        corner_split(root, "test", TEST_CORNERS),
    )
    fit_returns(monkeypatch, corner_model())
    cfg = training.TrainConfig(family="basic", image_size=4, batch_size=8, calibrate=True, tta=True)
    result = training.train_model(cfg, *splits)

    expected = best_temperature(VAL_CORNERS)
    assert expected == pytest.approx(1.500, abs=0.001)  # worked out once with the brute force above
    assert result.temperature == pytest.approx(expected, rel=2e-3)
    # What a wrong fit would have given: on test (0.523), or on the single unflipped view (1.774).
    assert best_temperature(TEST_CORNERS) == pytest.approx(0.523, abs=0.001)
    assert best_temperature(VAL_CORNERS, slice(0, 1)) == pytest.approx(1.774, abs=0.001)
    # The temperature is folded into the served model: its validation scores are the calibrated mean.
    logits = np.array([c for rows in VAL_CORNERS.values() for c in rows], dtype=float) / 255 * 8 - 4
    served = (1 / (1 + np.exp(-logits / result.temperature))).mean(axis=1)
    np.testing.assert_allclose(result.val_scores, served, rtol=1e-5)
