"""The model card's figures for a hand-made training result, every row written out by hand.

Intervals worked out with the closed forms (Wilson for proportions, Hanley-McNeil for the AUC,
z = 1.95996): e.g. 8 of 10: p = 0.8, centre (0.8 + 0.19208) / 1.38415 = 0.71678, half-width
1.95996 x sqrt(0.016 + 0.0096037) / 1.38415 = 0.22656, so 0.490-0.943."""

from __future__ import annotations

import math

from components.core.modeling.train_config import TrainConfig
from components.core.registry import versions
from components.core.reporting import model_card
from components.core.step_results import TrainSummary

VAL = {
    "accuracy": 0.85,
    "auc": 0.9,
    "sensitivity": 0.9,
    "specificity": 0.8,
    "brier": 0.1,
    "ece": 0.05,
    "threshold": 0.4,
    "confusion_matrix": [[40, 10], [5, 45]],
    "n": 100,
}
TEST = {
    "accuracy": 0.85,
    "auc": 0.875,
    "sensitivity": 0.9,
    "specificity": 0.8,
    "brier": 0.12,
    "ece": math.nan,
    "threshold": 0.4,
    "confusion_matrix": [[8, 2], [1, 9]],
    "n": 20,
}

METRIC_ROWS = [
    "| metric | validation (95 % CI) | test (95 % CI) |",
    "|---|---|---|",
    "| accuracy | 0.850 (0.767-0.907) | 0.850 (0.640-0.948) |",
    "| sensitivity (malignant recall) | 0.900 (0.786-0.957) | 0.900 (0.596-0.982) |",
    "| specificity | 0.800 (0.670-0.888) | 0.800 (0.490-0.943) |",
    "| ROC AUC | 0.900 (0.837-0.963) | 0.875 (0.714-1.000) |",  # 1.036 clipped
    "| Brier score (lower is better) | 0.100 | 0.120 |",
    "| ECE, 10 bins (lower is better) | 0.050 | n/a |",
    "| images | 100 | 20 |",
]


def winner() -> TrainSummary:
    return TrainSummary(
        name="lite0",
        family="efficientnet-lite0",
        run_id="run-1",
        model_uri="runs:/run-1/model",
        threshold=0.4,
        val=VAL,
        test=TEST,
        params=3_400_000,
        seconds=812.4,
        config=TrainConfig(family="efficientnet-lite0", min_sensitivity=0.9),
        temperature=1.5,
        figures=["figures/val_roc.png"],
    )


def test_every_metric_row_for_a_hand_made_result():
    assert model_card.metrics_table(VAL, TEST) == METRIC_ROWS


def test_the_card_states_those_rows_the_threshold_rule_and_the_calibration():
    reg = versions.Registration("skin", "4", "models:/skin/4", "champion", True, "4", None)
    result = winner()
    card = model_card.build(result, reg, [result]).splitlines()
    start = card.index(METRIC_ROWS[0])
    assert card[start : start + len(METRIC_ROWS)] == METRIC_ROWS
    text = "\n".join(card)
    assert "At the stored decision threshold 0.4000." in text
    # The recall target is the model's own (0.9 here), not a default repeated in the card.
    assert "validation malignant recall reaches 0.90 plus one standard error" in text
    assert "expected to stay at or above 0.90;" in text
    assert (
        "Brier score 0.100 (validation), 0.120 (test); expected calibration error (10 equal-width bins) "
        "0.050 (validation), n/a (test)."
    ) in text
    assert "Temperature scaling fitted on validation (T = 1.500)" in text
    assert "| lite0 (winner) | 0.850 | 0.900 | 0.850 | 0.875 | 0.900 | 0.800 | 3,400,000 | 812 |" in text
