"""Uncertain: class-conditional split conformal prediction on p(malignant).

The nonconformity of class c for an image is ``1 - p_c`` (p_benign = 1 - p). For each class
separately (Mondrian conformal prediction, so the malignant class keeps its own coverage
whatever the class balance), the calibration scores are the validation images *of that class*;
the class enters an image's prediction set when its score is at most the
``ceil((n_c + 1) * level) / n_c`` empirical quantile. With exchangeable images this covers the
true class with probability at least ``level``, per class.

For two classes the sets reduce to two numbers stored with the model:
benign is in the set when ``p <= benign_max_p``, malignant when ``p >= malignant_min_p``.
Written out here (a few lines) rather than through MAPIE: the sets must be applied by every
consumer from those two stored numbers, without the calibration data or MAPIE's estimator
wrapper in the serving path; tests/test_decision.py checks them by hand-worked examples.
"""

from __future__ import annotations

import math

import numpy as np

from components.core.settings import CLASSES


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile of ``scores`` at ``level``: the k-th smallest score with
    k = ceil((n + 1) * level); +inf (the class is always in the set) when k > n."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    if not 0 < level < 1:
        raise ValueError(f"coverage level must be in (0, 1), got {level}")
    k = math.ceil((len(scores) + 1) * level)
    return math.inf if k > len(scores) else float(scores[k - 1])


def fit(labels: np.ndarray, p: np.ndarray, level: float) -> dict[str, float]:
    """``{"benign_max_p", "malignant_min_p", "level"}`` from validation labels and p(malignant)."""
    labels, p = np.asarray(labels).astype(int), np.asarray(p, dtype=np.float64)
    for c, name in enumerate(CLASSES):
        if not (labels == c).any():
            raise ValueError(f"conformal calibration needs validation images of every class; none is {name}")
    q_benign = conformal_quantile(p[labels == 0], level)  # benign score: 1 - p_benign = p
    q_malignant = conformal_quantile(1 - p[labels == 1], level)  # malignant score: 1 - p
    return {"benign_max_p": min(q_benign, 1.0), "malignant_min_p": max(1 - q_malignant, 0.0), "level": level}


def prediction_set(p: float, sets: dict[str, float]) -> list[str]:
    out = []
    if p <= sets["benign_max_p"]:
        out.append(CLASSES[0])
    if p >= sets["malignant_min_p"]:
        out.append(CLASSES[1])
    return out


def coverage(labels: np.ndarray, p: np.ndarray, sets: dict[str, float]) -> dict[str, float]:
    """Share of each class's images whose prediction set holds their true class."""
    labels, p = np.asarray(labels).astype(int), np.asarray(p, dtype=np.float64)
    out = {}
    for c, name in enumerate(CLASSES):
        mine = p[labels == c]
        hit = mine <= sets["benign_max_p"] if c == 0 else mine >= sets["malignant_min_p"]
        out[name] = float(hit.mean()) if mine.size else math.nan
    return out
