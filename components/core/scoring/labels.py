"""Labels that arrive later (biopsy results): a CSV of ``key,label`` joined to the scored rows.

Accuracy and malignant recall are over the joined rows the model decided (benign or malignant);
referred rows are counted, not scored as right or wrong, as in docs/referral.md.
The threshold's label (``label``) is scored too, over every joined row with a prediction.
"""

from __future__ import annotations

import csv
import io
import math

from components.core.data import storage
from components.core.settings import CLASSES


def read_labels(uri: str) -> dict[str, str]:
    """``{key: label}`` from a CSV with a ``key,label`` header; labels are class names or 0/1."""
    text = storage.read_bytes(uri).decode("utf-8-sig")
    out: dict[str, str] = {}
    for n, rec in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        label = (rec.get("label") or "").strip().lower()
        label = CLASSES[int(label)] if label in ("0", "1") else label
        if label not in CLASSES or not rec.get("key"):
            raise ValueError(f"{uri} line {n}: expected key,label with label one of {CLASSES} or 0/1, got {rec}")
        out[rec["key"].strip()] = label
    return out


def _share(hits: int, of: int) -> float:
    return hits / of if of else math.nan


def label_metrics(rows: list[dict], labels: dict[str, str]) -> dict[str, float]:
    """Figures over the rows with a label and a prediction."""
    joined = [(r, labels[r["key"]]) for r in rows if r["key"] in labels and r.get("p_malignant") is not None]
    decided = [(r, y) for r, y in joined if r["decision"] in CLASSES]
    malignant = [(r, y) for r, y in decided if y == CLASSES[1]]
    return {
        "labelled": float(len(joined)),
        "labelled_decided": float(len(decided)),
        "labelled_referred": float(len(joined) - len(decided)),
        "label_accuracy": _share(sum(r["label"] == y for r, y in joined), len(joined)),
        "label_malignant_recall": _share(
            sum(r["label"] == y for r, y in joined if y == CLASSES[1]), sum(y == CLASSES[1] for _, y in joined)
        ),
        "decided_accuracy": _share(sum(r["decision"] == y for r, y in decided), len(decided)),
        "decided_malignant_recall": _share(sum(r["decision"] == y for r, y in malignant), len(malignant)),
        "brier": _share(sum((r["p_malignant"] - (y == CLASSES[1])) ** 2 for r, y in joined), len(joined)),
    }


def recall_floor(evaluation: dict | None) -> float | None:
    """The lower end of the 95 % interval of the test split's malignant recall (the model card's,
    from the training run's ``evaluation.json``); None without one."""
    from components.core.evaluation.confidence import intervals

    if not evaluation or "confusion_matrix" not in evaluation.get("test", {}):
        return None
    low = intervals(evaluation["test"])["sensitivity"][0]
    return None if low != low else float(low)
