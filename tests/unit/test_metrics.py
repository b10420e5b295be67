"""Metrics and the validation-only decision threshold."""

import numpy as np
import pytest

from components.core.evaluation.metrics import choose_threshold, classification_metrics, expected_calibration_error


def test_metrics_on_a_known_confusion_matrix():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.2, 0.9, 0.8, 0.4, 0.7])
    m = classification_metrics(y, p, threshold=0.5)
    assert m["confusion_matrix"] == [[2, 1], [1, 3]]
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["sensitivity"] == pytest.approx(3 / 4) and m["specificity"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(11 / 12)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_threshold_reaches_the_recall_target_with_a_margin():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(180)].astype(int)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, y.size), 0, 1)
    t = choose_threshold(y, p, min_sensitivity=0.85)
    sens = classification_metrics(y, p, t)["sensitivity"]
    # Target 0.85 + sqrt(0.85 * 0.15 / 180) = 0.8766: ceil(0.8766 * 180) = 158 of 180 malignant caught.
    assert sens == pytest.approx(158 / 180)
    # The highest such threshold: one step higher loses the target.
    higher = np.sort(p[(y == 1) & (p > t)])
    if higher.size:
        assert classification_metrics(y, p, higher.min())["sensitivity"] < sens


def test_perfectly_calibrated_scores_have_small_ece():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    # Shown p + 0.3 (clipped at 1) where the rate is p: for p < 0.6 (bins 3-8) off by 0.3, weight 0.6;
    # bin 9 holds p >= 0.6, shown 0.9875 on average against a rate of 0.8, weight 0.4.
    # ECE = 0.6 * 0.3 + 0.4 * 0.1875 = 0.255 (up to sampling noise).
    assert expected_calibration_error(y, np.clip(p + 0.3, 0, 1)) == pytest.approx(0.255, abs=0.01)
