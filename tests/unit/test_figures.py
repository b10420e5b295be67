"""The evaluation figures as pictures (opened with Pillow: size, content, the threshold marker)
and the card's confidence intervals, hand-worked."""

import math

import numpy as np
import pytest

from components.core.evaluation import confidence, figures
from tests.support.image_checks import assert_sensible, count_near, pixels

RED = np.array([0xD6, 0x27, 0x28])  # figures.THRESHOLD_STYLE's colour
BLUE, ORANGE, GREEN = np.array([0x1F, 0x77, 0xB4]), np.array([0xFF, 0x7F, 0x0E]), np.array([0x2C, 0xA0, 0x2C])


def scored(n=200, seed=0, name="basic", threshold=0.4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(0.35 * labels + 0.65 * rng.random(n), 0, 1)
    return figures.Scored(name, labels, scores, threshold)


def test_every_evaluation_figure_is_a_sensible_png():
    val, test = scored(seed=1), scored(seed=2)
    history = {
        "loss": [0.7, 0.5, 0.4],
        "val_loss": [0.7, 0.6, 0.55],
        "auc": [0.6, 0.8, 0.9],
        "val_auc": [0.6, 0.75, 0.8],
    }
    pngs = figures.evaluation_pngs("basic", 0.4, history, val.labels, val.scores, test.labels, test.scores)
    assert sorted(pngs) == sorted(
        [f"{s}_{k}.png" for s in ("val", "test") for k in ("roc", "pr", "confusion", "calibration")]
        + ["training_curves.png"]
    )
    for name, png in pngs.items():
        assert_sensible(png)
    # Training curves: training and validation in two colours, on two panels.
    curves = pixels(pngs["training_curves.png"])
    assert count_near(curves, BLUE) > 200 and count_near(curves, ORANGE) > 200


def test_the_threshold_is_marked_on_the_roc_and_pr_curves():
    s = scored()
    for png in (figures.roc_png(s, "val"), figures.pr_png(s, "test")):
        assert count_near(pixels(png), RED) > 30  # the marker (and its legend entry)
    # Control: the same curve drawn without the marker has no red in it.
    from matplotlib.figure import Figure

    fig = Figure(figsize=figures.SIZE)
    figures._roc_on(fig.subplots(), s, mark=False)
    assert count_near(pixels(figures.png_bytes(fig)), RED) == 0


def test_a_split_with_one_class_says_so_instead_of_failing():
    one = figures.Scored("basic", np.zeros(20, int), np.linspace(0, 1, 20), 0.5)
    for draw in (figures.roc_png, figures.pr_png, figures.calibration_png, figures.confusion_png):
        rgb = pixels(draw(one, "val"))
        assert rgb.shape[0] > 200 and (rgb < 200).any()


def test_the_comparison_draws_every_model_on_both_panels():
    models = [
        scored(seed=1, name="basic"),
        scored(seed=2, name="narrow", threshold=0.5),
        scored(seed=3, name="wide", threshold=0.3),
    ]
    rgb = assert_sensible(figures.comparison_png(models, "val", winner="basic"), min_size=(700, 300))
    half = rgb.shape[1] // 2
    for panel in (rgb[:, :half], rgb[:, half:]):  # ROC left, precision-recall right
        assert all(count_near(panel, c) > 100 for c in (BLUE, ORANGE, GREEN))


def test_wilson_interval_hand_worked():
    # 0 of 10: the upper bound is z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.2775.
    low, high = confidence.wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    # 10 of 10 mirrors it. 81 of 100: centre (0.81 + 0.019207) / 1.038415 = 0.79853, half
    # 1.96 * sqrt(0.001539 + 0.000096) / 1.038415 = 0.07632.
    assert confidence.wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert confidence.wilson(81, 100) == pytest.approx((0.7222, 0.8749), abs=1e-4)
    assert all(math.isnan(v) for v in confidence.wilson(0, 0))


def test_hanley_mcneil_auc_interval_hand_worked():
    # A = 0.8, 50 and 50: Q1 = 0.6667, Q2 = 0.7111, var = (0.16 + 49 * 0.02667 + 49 * 0.07111) / 2500
    # = 0.0019804, SE = 0.04450, so 0.8 -+ 1.96 * 0.0445.
    low, high = confidence.auc_hanley_mcneil(0.8, 50, 50)
    assert (low, high) == pytest.approx((0.8 - 0.08722, 0.8 + 0.08722), abs=2e-4)
    assert confidence.auc_hanley_mcneil(0.99, 5, 5)[1] == 1.0  # clipped
    assert all(math.isnan(v) for v in confidence.auc_hanley_mcneil(float("nan"), 5, 5))


def test_intervals_read_the_confusion_matrix():
    metrics = {"confusion_matrix": [[40, 10], [5, 45]], "auc": 0.9}  # tn fp / fn tp
    ci = confidence.intervals(metrics)
    assert ci["accuracy"] == confidence.wilson(85, 100)
    assert ci["sensitivity"] == confidence.wilson(45, 50) and ci["specificity"] == confidence.wilson(40, 50)
    assert ci["auc"] == confidence.auc_hanley_mcneil(0.9, 50, 50)


def test_figures_that_cannot_be_drawn_are_named_and_training_goes_on(caplog):
    """The train step draws before it records: a drawing failure gives no figures and the reason
    (the run's figures_error tag), never an exception that would lose the trained model."""
    from types import SimpleNamespace

    from components.core.steps.train import draw_evaluation

    broken = SimpleNamespace(
        threshold=0.5,
        history={"loss": [1.0]},
        val_scores=np.array([0.1, 0.9]),
        test_scores=np.array([0.2]),
        referral=None,
        policy=None,
    )
    pngs, why = draw_evaluation("m", broken, np.array([0, 1, 1]), np.array([0]))  # 3 labels, 2 scores
    assert pngs == {} and why.split(":")[0].endswith("Error"), why
    assert "could not draw the evaluation figures" in caplog.text
