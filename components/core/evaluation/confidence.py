"""95 % confidence intervals for the figures a model card reports, in closed form (deterministic).

Proportions (accuracy, sensitivity, specificity): the Wilson score interval, which stays inside
[0, 1] and behaves on small counts, where the plain normal interval does not. ROC AUC: the
Hanley & McNeil (1982) standard error, a normal approximation from the AUC and the two class
counts. Neither needs the scores or a random seed: the counts in a metrics dict suffice, so the
card's intervals are the same every time they are computed.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n``; (nan, nan) when n is 0."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def auc_hanley_mcneil(auc: float, positives: int, negatives: int, z: float = Z95) -> tuple[float, float]:
    """Normal interval from the Hanley-McNeil standard error of an ROC AUC, clipped to [0, 1]."""
    if positives <= 0 or negatives <= 0 or auc is None or math.isnan(auc):
        return math.nan, math.nan
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    se = math.sqrt(max(var, 0.0))
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def intervals(metrics: dict) -> dict[str, tuple[float, float]]:
    """95 % intervals for accuracy, sensitivity, specificity and AUC of one
    :func:`components.core.evaluation.metrics.classification_metrics` result (its confusion matrix)."""
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    n = tn + fp + fn + tp
    return {
        "accuracy": wilson(tn + tp, n),
        "sensitivity": wilson(tp, tp + fn),
        "specificity": wilson(tn, tn + fp),
        "auc": auc_hanley_mcneil(metrics.get("auc", math.nan), tp + fn, tn + fp),
    }
