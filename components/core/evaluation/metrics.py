"""Classification metrics for p(malignant) scores, and the decision threshold chosen on validation."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score, roc_curve


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width probability bins: how far shown probabilities are from observed rates."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(p[mask].mean() - y_true[mask].mean())
    return float(ece)


def classification_metrics(y_true: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, ROC AUC, sensitivity (malignant recall), specificity, calibration and confusion matrix."""
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    pred = (p >= threshold).astype(int)
    cm = confusion_matrix(y_true, pred, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    both_classes = len(np.unique(y_true)) == 2
    return {
        "accuracy": float((pred == y_true).mean()) if y_true.size else 0.0,
        "auc": float(roc_auc_score(y_true, p)) if both_classes else float("nan"),
        "sensitivity": tp / (tp + fn) if tp + fn else 0.0,
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "brier": float(brier_score_loss(y_true, p, pos_label=1)) if y_true.size else float("nan"),
        "ece": expected_calibration_error(y_true, p),
        "threshold": float(threshold),
        "confusion_matrix": cm.tolist(),
        "n": int(y_true.size),
    }


def roc_points(y_true: np.ndarray, p: np.ndarray, max_points: int = 200) -> tuple[list, list, list]:
    """ROC curve (fpr, tpr, thresholds), thinned for the Kubeflow dashboard."""
    fpr, tpr, thr = roc_curve(np.asarray(y_true).astype(int), np.asarray(p).reshape(-1))
    thr = np.clip(thr, 0.0, 1.0)  # sklearn puts +inf first
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return fpr.tolist(), tpr.tolist(), thr.tolist()


def choose_threshold(y_val: np.ndarray, p_val: np.ndarray, min_sensitivity: float = 0.85) -> float:
    """Pick the decision threshold on VALIDATION data only, for high malignant recall.

    The threshold is the highest one whose validation sensitivity reaches ``min_sensitivity``
    plus one standard error of that estimate (sqrt(s(1-s)/n_malignant)), so recall on new
    images is expected to stay at or above ``min_sensitivity``; the highest such threshold
    gives the best specificity at that recall. It never looks at test data.
    """
    y = np.asarray(y_val).astype(int)
    p = np.asarray(p_val, dtype=np.float64).reshape(-1)
    positives = int((y == 1).sum())
    if positives == 0 or positives == y.size:
        return 0.5
    target = min(1.0, min_sensitivity + float(np.sqrt(min_sensitivity * (1 - min_sensitivity) / positives)))
    scores = np.sort(p[y == 1])[::-1]  # malignant scores, highest first
    # The k-th highest malignant score is the highest threshold that catches k malignant images.
    k = int(np.ceil(target * positives))
    return float(scores[k - 1])
