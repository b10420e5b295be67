"""How the decision policy does on labelled images: refer rates by reason, the quality of what
it does decide, conformal coverage per class, and the risk-coverage curve."""

from __future__ import annotations

import math

import numpy as np

from components.core.decision import conformal, image_checks
from components.core.decision.policy import OUT_OF_SCOPE, REFER, UNCERTAIN, Decision, DecisionPolicy
from components.core.settings import CLASSES


def decide_split(
    policy: DecisionPolicy, split, p: np.ndarray, split_features: np.ndarray, batch: int = 256
) -> list[Decision]:
    """Decisions for a preprocessed split whose p and ImageNet features are already computed
    (the same :meth:`DecisionPolicy.decide` every consumer uses)."""
    scores = policy.scope.scores(split_features)
    out: list[Decision] = []
    for i in range(0, len(split), batch):
        pixels = split.gather(np.arange(i, min(i + batch, len(split))))
        out += [
            policy.decide(float(p[i + j]), float(scores[i + j]), image_checks.image_problems(img))
            for j, img in enumerate(pixels)
        ]
    return out


def referral_metrics(labels: np.ndarray, decisions: list[Decision]) -> dict[str, float]:
    """Rates over all images; accuracy, malignant recall and specificity over the decided ones."""
    labels = np.asarray(labels).astype(int)
    n = len(decisions)
    if n != len(labels):
        raise ValueError(f"{n} decisions for {len(labels)} labels")
    kinds = np.array([d.decision for d in decisions])
    reasons = np.array([d.refer_reason or "" for d in decisions])
    decided = kinds != REFER
    pred = (kinds == CLASSES[1]).astype(int)
    ok = (pred == labels) & decided

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(mask[of].mean()) if of.any() else math.nan

    in_set = np.array([CLASSES[y] in d.prediction_set for y, d in zip(labels, decisions)])
    return {
        "n": float(n),
        "refer_rate": float((~decided).mean()) if n else math.nan,
        "refer_rate_out_of_scope": float((reasons == OUT_OF_SCOPE).mean()) if n else math.nan,
        "refer_rate_uncertain": float((reasons == UNCERTAIN).mean()) if n else math.nan,
        "decided": float(decided.sum()),
        "decided_accuracy": share(ok, decided),
        "decided_malignant_recall": share(ok, decided & (labels == 1)),
        "decided_specificity": share(ok, decided & (labels == 0)),
        "coverage_benign": share(in_set, labels == 0),
        "coverage_malignant": share(in_set, labels == 1),
    }


def risk_coverage(
    val_labels: np.ndarray,
    val_p: np.ndarray,
    labels: np.ndarray,
    p: np.ndarray,
    threshold: float,
    levels: tuple[float, ...] = (0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99),
) -> list[dict[str, float]]:
    """For each conformal level (sets refitted on validation), the share of ``labels`` referred as
    uncertain and the accuracy of the rest: the trade-off the level buys. (Below the level where
    the classes' sets overlap, empty sets refer too, so very low levels are left out.)"""
    labels, p = np.asarray(labels).astype(int), np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    points = []
    for level in levels:
        sets = conformal.fit(val_labels, val_p, level)
        benign_in = p <= sets["benign_max_p"]
        malignant_in = p >= sets["malignant_min_p"]
        decided = np.where(pred == 1, malignant_in & ~benign_in, benign_in & ~malignant_in)
        points.append(
            {
                "level": level,
                "refer_rate": float(1 - decided.mean()),
                "accuracy": float((pred == labels)[decided].mean()) if decided.any() else math.nan,
            }
        )
    return points
