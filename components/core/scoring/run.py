"""One scoring run, end to end in plain Python: list, score what is new, write, monitor, summarise.

The pipeline's components call the pieces (list, score a shard, report); ``score_prefix`` runs
them in one process for tests and small prefixes.
"""

from __future__ import annotations

import logging

import numpy as np

from components.core.scoring import batch as scoring
from components.core.scoring import drift
from components.core.scoring.labels import label_metrics, read_labels, recall_floor
from components.core.settings import DRIFT_ALPHA, DRIFT_MIN_IMAGES, SCORE_BATCH, SCORING_MAX_BAD_FRACTION

log = logging.getLogger(__name__)


def monitor(
    reference: drift.Reference | None, rows: list[dict], alpha: float = DRIFT_ALPHA, min_images: int = DRIFT_MIN_IMAGES
) -> list[dict]:
    """The three signals over the rows scored in this run (rows with an error are left out)."""
    ok = [r for r in rows if not r["error"] and r["p_malignant"] is not None]
    inputs = [r["input_features"] for r in ok]
    kinds = drift.decision_kinds([r["decision"] for r in ok], [r["refer_reason"] for r in ok])
    return [
        drift.input_drift(reference, np.array(inputs, np.float32), [r["label"] for r in ok], alpha, min_images),
        drift.prediction_drift(
            reference.p if reference else None, np.array([r["p_malignant"] for r in ok]), alpha, min_images
        ),
        drift.decision_drift(reference.kinds if reference else None, kinds, alpha, min_images),
    ]


def summarise(
    rows: list[dict],
    already_scored: int,
    signals: list[dict],
    predictions_uri: str | None,
    labelled: dict | None = None,
    recall_floor: float | None = None,
) -> dict:
    drifted = drift.any_drift(signals)
    # Retraining answers a change in what comes in (input drift) or in how right the model is
    # (labels). A change in the model's outputs or in the decision mix with the same inputs is a
    # reason for a person to look (a different case mix, a problem upstream), not to retrain.
    reasons = [f"{name} drift" for name in drifted if name == "input"]
    review = [f"{name} drift" for name in drifted if name != "input"]
    recall = (labelled or {}).get("label_malignant_recall")
    if recall_floor is not None and recall is not None and recall == recall and recall < recall_floor:
        reasons.append(
            f"malignant recall {recall:.3f} below {recall_floor:.3f}, the lower 95 % bound "
            "of the model card's test recall"
        )
    return {
        "scored": sum(1 for r in rows if not r["error"]),
        "already_scored": already_scored,
        "errors": sum(1 for r in rows if r["error"]),
        "referred": sum(1 for r in rows if r["decision"] == "refer"),
        "malignant": sum(1 for r in rows if r["decision"] == "malignant"),
        "drift_detected": bool(drifted),
        "retrain_recommended": bool(reasons),
        "retrain_reasons": reasons,
        "review_recommended": bool(review),
        "review_reasons": review,
        "predictions_uri": predictions_uri,
        "signals": signals,
        "labels": labelled,
    }


def version_rows(out_uri: str, predictor) -> list[dict]:
    """Every row this model version wrote under ``out_uri`` (what labels are joined to)."""
    return [
        r
        for r in scoring.read_rows(out_uri, list(scoring.COLUMNS))
        if (r["model_name"], r["model_version"]) == (predictor.model_name, predictor.model_version)
    ]


def shards(uris: list[str], shard_size: int) -> list[dict]:
    """The pipeline's loop items: ``{"index": i, "uris": [...]}``, ``shard_size`` files each."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    return [
        {"index": i, "uris": uris[start : start + shard_size]}
        for i, start in enumerate(range(0, len(uris), shard_size))
    ]


def score_files(
    predictor, uris: list[str], data_uri: str, out_uri: str, name: str, batch: int = SCORE_BATCH
) -> tuple[scoring.ScoreResult, str | None]:
    """Score what this model version has not scored among ``uris``; write the rows as ``name``."""
    axes = drift.InputAxes.fit(predictor.policy.scope.reference)
    result = scoring.score_uris(predictor, uris, out_uri, axes.inputs, batch, data_uri=data_uri)
    return result, scoring.write_rows(result.rows, out_uri, name)


def finish(
    predictor,
    rows: list[dict],
    already_scored: int,
    out_uri: str,
    predictions_uri: str | None,
    reference_uri: str | None = None,
    labels_uri: str | None = None,
    min_images: int = DRIFT_MIN_IMAGES,
) -> dict:
    """Monitoring, the labels join and the summary of a run whose rows are ``rows``."""
    # A split the caller names wins; otherwise the reference stored with the model version.
    reference = (
        drift.Reference.from_split(predictor, reference_uri, drift.InputAxes.fit(predictor.policy.scope.reference))
        if reference_uri
        else drift.Reference.from_policy(predictor.policy)
    )
    signals = monitor(reference, rows, min_images=min_images)
    labelled, floor = None, None
    if labels_uri:
        labelled = label_metrics(version_rows(out_uri, predictor), read_labels(labels_uri))
        floor = recall_floor(training_evaluation(predictor))
        if floor is not None:
            labelled["malignant_recall_floor"] = floor
    return summarise(rows, already_scored, signals, predictions_uri, labelled, floor)


def training_evaluation(predictor) -> dict | None:
    """The training run's ``evaluation.json`` (val and test metrics), or None when the model's
    run is not on the tracking server (a Model directory trained elsewhere, no server)."""
    import json

    import mlflow

    run_id = getattr(predictor, "run_id", None)
    if not run_id or not mlflow.is_tracking_uri_set():  # no server: MLflow would create a store in the cwd
        return None
    try:
        with open(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation.json")) as fh:
            return json.load(fh)
    except Exception as err:  # noqa: BLE001 - no evaluation: no floor, said in the log
        log.warning("no evaluation.json for run %s (%s): no malignant-recall alert", run_id, type(err).__name__)
        return None


def score_prefix(
    data_uri: str,
    out_uri: str,
    model_uri: str,
    reference_uri: str | None = None,
    labels_uri: str | None = None,
    max_bad_fraction: float = SCORING_MAX_BAD_FRACTION,
    batch: int = SCORE_BATCH,
    min_images: int = DRIFT_MIN_IMAGES,
    predictor=None,
) -> tuple[dict, list[dict]]:
    """Score what is new under ``data_uri`` into ``out_uri`` (one process, no shards) and monitor
    it against the preprocessed split at ``reference_uri`` (the model's validation split; None:
    no reference). Fails past ``max_bad_fraction`` before writing. Returns (summary, the rows)."""
    from components.core.inference.predictor import Predictor

    predictor = predictor or Predictor.load(model_uri)
    axes = drift.InputAxes.fit(predictor.policy.scope.reference)
    result = scoring.score_uris(
        predictor, scoring.list_inputs(data_uri, out_uri), out_uri, axes.inputs, batch, data_uri=data_uri
    )
    scoring.check_bad_fraction(result.rows, max_bad_fraction)
    uri = scoring.write_rows(result.rows, out_uri, scoring.run_name())
    return finish(
        predictor, result.rows, result.already_scored, out_uri, uri, reference_uri, labels_uri, min_images
    ), result.rows


def run_metrics(summary: dict) -> dict[str, float]:
    """The summary's numbers as MLflow metrics: counts, each signal's p-value, the labels' figures."""
    out = {k: float(summary[k]) for k in ("scored", "already_scored", "errors", "referred", "malignant")}
    out["drift_detected"] = float(summary["drift_detected"])
    out["retrain_recommended"] = float(summary["retrain_recommended"])
    out["review_recommended"] = float(summary["review_recommended"])
    for s in summary["signals"]:
        if isinstance(s.get("p_value"), float) and s["p_value"] == s["p_value"]:
            out[f"{s['signal']}_drift_p"] = s["p_value"]
    for k, v in (summary.get("labels") or {}).items():
        if isinstance(v, float) and v == v:
            out[k] = v
    return out


def scored_dataset(data_uri: str, rows: list[dict], run_name: str):
    """The images a run scored as an MLflow dataset: where they are and a digest of their content
    hashes (not the images)."""
    import hashlib

    from components.core.registry.lineage import image_dataset

    hashes = sorted(r["sha256"] for r in rows if r["sha256"])
    digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]
    profile = {
        "images": len(rows),
        "scored": sum(1 for r in rows if not r["error"]),
        "errors": sum(1 for r in rows if r["error"]),
    }
    return image_dataset(f"scoring-{run_name}", data_uri, digest, profile)


def log_run(
    summary: dict, page: str, params: dict, tracking_uri: str, experiment: str, run_name: str, dataset=None
) -> str:
    """One MLflow run for the scoring run, in the model's experiment: parameters (data, output,
    model URI), tags naming the model version it used, the images it scored as its input dataset
    (:func:`scored_dataset`), the metrics, the summary and the worklist."""
    import mlflow

    from components.core import settings
    from components.core.registry import tracking

    experiment_id = tracking.setup(tracking_uri or None, experiment)
    with tracking.start_run(experiment_id, run_name) as run:
        if dataset is not None:
            mlflow.log_input(dataset, context="scoring")
        mlflow.set_tags(
            {
                "stage": "score",
                "model_name": params.get("model_name", ""),
                "model_version": params.get("model_version", ""),
                "pipeline_run": settings.run_id(),
                "retrain_recommended": str(summary["retrain_recommended"]).lower(),
                "review_recommended": str(summary["review_recommended"]).lower(),
            }
        )
        mlflow.log_params({k: v for k, v in params.items() if v not in (None, "")})
        mlflow.log_metrics(run_metrics(summary))
        mlflow.log_dict(summary, "scoring/summary.json")
        mlflow.log_text(page, "scoring/worklist.html")
        return run.info.run_id
