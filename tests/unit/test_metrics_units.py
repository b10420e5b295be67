"""Unit tests of metrics and class weights, with expected values worked out by hand."""

import numpy as np
import pytest

from components.core.evaluation.metrics import choose_threshold, expected_calibration_error, roc_points
from components.core.modeling.training import class_weight_for

# Four samples: benign scores 0.1 and 0.4, malignant scores 0.35 and 0.8.
Y4 = np.array([0, 0, 1, 1])
P4 = np.array([0.1, 0.4, 0.35, 0.8])


def test_roc_points_of_four_samples():
    # Lowering the threshold: >= 0.8 catches one malignant (tpr 1/2), >= 0.4 adds a benign (fpr 1/2),
    # >= 0.35 the other malignant (tpr 1), >= 0.1 the last benign (fpr 1). The first point,
    # nothing called malignant, has the threshold clipped to 1.0.
    fpr, tpr, thr = roc_points(Y4, P4)
    assert fpr == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert thr == [1.0, 0.8, 0.4, 0.35, 0.1]


def test_roc_points_are_thinned_evenly_to_max_points():
    # 5 points down to 3: indices 0, 2 and 4.
    fpr, tpr, thr = roc_points(Y4, P4, max_points=3)
    assert (fpr, tpr, thr) == ([0.0, 0.5, 1.0], [0.0, 0.5, 1.0], [1.0, 0.4, 0.1])


def test_threshold_is_the_kth_highest_malignant_score():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.3, 0.65, 0.1, 0.9, 0.7, 0.6, 0.2])
    # 4 malignant; target 0.5 + sqrt(0.5 * 0.5 / 4) = 0.75, so 3 of 4 must be caught:
    # the third-highest malignant score, 0.6.
    assert choose_threshold(y, p, min_sensitivity=0.5) == 0.6
    # target 0.85 + sqrt(0.85 * 0.15 / 4) = 1.03, capped at 1: all 4, the lowest malignant score.
    assert choose_threshold(y, p, min_sensitivity=0.85) == 0.2


def test_threshold_is_0_5_when_validation_has_one_class():
    assert choose_threshold(np.array([0, 0, 0]), np.array([0.1, 0.7, 0.9])) == 0.5
    assert choose_threshold(np.array([1, 1]), np.array([0.1, 0.7])) == 0.5


def test_expected_calibration_error_by_hand():
    # Bins of width 0.1. Bin 0: p 0.05, rate 0 -> |0.05| * 1/4. Bin 1: p 0.15 and 0.15, rate 1/2
    # -> |0.15 - 0.5| * 2/4. Bin 9: p 0.95, rate 1 -> |0.05| * 1/4. Sum: 0.0125 + 0.175 + 0.0125.
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.15, 0.95])
    assert expected_calibration_error(y, p) == pytest.approx(0.2)


def test_class_weights_balance_the_classes():
    # n / (2 * count): each class then carries half the total weight (n / 2).
    # [0, 0, 0, 1]: benign 4 / 6 = 2/3 (3 x 2/3 = 2), malignant 4 / 2 = 2 (1 x 2 = 2).
    assert class_weight_for(np.array([0, 0, 0, 1])) == pytest.approx({0: 2 / 3, 1: 2.0})
    assert class_weight_for(np.array([0, 1, 0, 1])) == {0: 1.0, 1: 1.0}
    # A class absent from the labels counts as 1 (no division by zero): 2 / 2 = 1.0.
    assert class_weight_for(np.array([0, 0], dtype=np.uint8)) == {0: 0.5, 1: 1.0}
