"""One scoring run, end to end in plain Python: list, score what is new, write, monitor, summarise.

The pipeline's components call the pieces (list, score a shard, report); ``score_prefix`` runs
them in one process for tests and small prefixes.
"""

from __future__ import annotations

import logging

import numpy as np

from components.core.scoring import batch as scoring
from components.core.scoring import drift
from components.core.scoring.labels import label_metrics, read_labels
from components.core.settings import DRIFT_ALPHA, DRIFT_MIN_IMAGES, SCORE_BATCH, SCORING_MAX_BAD_FRACTION

log = logging.getLogger(__name__)


def monitor(reference: drift.Reference | None, rows: list[dict], alpha: float = DRIFT_ALPHA,
            min_images: int = DRIFT_MIN_IMAGES) -> list[dict]:
    """The three signals over the rows scored in this run (rows with an error are left out)."""
    ok = [r for r in rows if not r["error"] and r["p_malignant"] is not None]
    inputs = [r["input_features"] for r in ok]
    kinds = drift.decision_kinds([r["decision"] for r in ok], [r["refer_reason"] for r in ok])
    return [
        drift.input_drift(reference, np.array(inputs, np.float32), [r["label"] for r in ok], alpha, min_images),
        drift.prediction_drift(reference.p if reference else None, np.array([r["p_malignant"] for r in ok]), alpha,
                               min_images),
        drift.decision_drift(reference.kinds if reference else None, kinds, alpha, min_images),
    ]


def summarise(rows: list[dict], already_scored: int, signals: list[dict], predictions_uri: str | None,
              labelled: dict | None = None, recall_floor: float | None = None) -> dict:
    drifted = drift.any_drift(signals)
    reasons = [f"{name} drift" for name in drifted]
    recall = (labelled or {}).get("decided_malignant_recall")
    if recall_floor is not None and recall is not None and recall == recall and recall < recall_floor:
        reasons.append(f"malignant recall {recall:.3f} below {recall_floor:.3f}")
    return {
        "scored": sum(1 for r in rows if not r["error"]),
        "already_scored": already_scored,
        "errors": sum(1 for r in rows if r["error"]),
        "referred": sum(1 for r in rows if r["decision"] == "refer"),
        "malignant": sum(1 for r in rows if r["decision"] == "malignant"),
        "drift_detected": bool(drifted),
        "retrain_recommended": bool(reasons),
        "retrain_reasons": reasons,
        "predictions_uri": predictions_uri,
        "signals": signals,
        "labels": labelled,
    }


def version_rows(out_uri: str, predictor) -> list[dict]:
    """Every row this model version wrote under ``out_uri`` (what labels are joined to)."""
    return [r for r in scoring.read_rows(out_uri, list(scoring.COLUMNS))
            if (r["model_name"], r["model_version"]) == (predictor.model_name, predictor.model_version)]


def score_prefix(data_uri: str, out_uri: str, model_uri: str, reference_uri: str | None = None,
                 labels_uri: str | None = None,
                 max_bad_fraction: float = SCORING_MAX_BAD_FRACTION, batch: int = SCORE_BATCH,
                 min_images: int = DRIFT_MIN_IMAGES, predictor=None) -> tuple[dict, list[dict]]:
    """Score what is new under ``data_uri`` into ``out_uri`` and monitor it against the
    preprocessed split at ``reference_uri`` (the model's validation split; None: no reference).
    Returns (summary, this run's rows)."""
    from components.core.predictor import Predictor

    predictor = predictor or Predictor.load(model_uri)
    axes = drift.InputAxes.fit(predictor.policy.scope.reference)
    uris = scoring.list_inputs(data_uri, out_uri)
    result = scoring.score_uris(predictor, uris, out_uri, axes.inputs, batch, data_uri=data_uri)
    scoring.check_bad_fraction(result.rows, max_bad_fraction)
    uri = scoring.write_rows(result.rows, out_uri, scoring.run_name())
    reference = drift.Reference.from_split(predictor, reference_uri, axes) if reference_uri else None
    signals = monitor(reference, result.rows, min_images=min_images)
    labelled = label_metrics(version_rows(out_uri, predictor), read_labels(labels_uri)) if labels_uri else None
    return summarise(result.rows, result.already_scored, signals, uri, labelled), result.rows
