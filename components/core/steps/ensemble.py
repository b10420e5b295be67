"""The selection's ensemble candidate: the average of the run's best k models (k >= 2).

Chosen like any model, on validation only: for each k, the mean of the best k models' stored
calibrated p(malignant) (their training runs' ``scores.json``: nothing is loaded to decide), at
the threshold the train step's rule picks on validation. The best k competes with the best single
model under selection's order (selection.rank_key: higher validation accuracy, then AUC; a tie
goes to the smaller model, so an ensemble must be strictly better). Only a winning ensemble is
built: its members loaded from MLflow, averaged in one Keras model (modeling/ensemble.py), scored
again (what is registered is what was measured), given its own decision policy (conformal sets
refitted on its validation p; the out-of-scope detector of the best member, which depends on
ImageNet features only, not on the classifier) and logged as its own MLflow run, like a trained model.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from components.core.step_results import TrainSummary

log = logging.getLogger(__name__)

FAMILY = "ensemble"
# Stored scores are rounded to 6 decimals and the members ran in float32: a larger gap between the
# built ensemble's p and the mean of the stored ones means the members are not what was measured.
MAX_SCORE_GAP = 1e-3


def best_average(ranked: list[TrainSummary], scores: list[dict], val_labels, test_labels) -> dict | None:
    """The best k (2..n) on validation for models ``ranked`` best first, with their stored scores;
    {"k", "threshold", "val", "test", "p_val", "p_test"}, or None with fewer than 2 models."""
    from components.core.evaluation.metrics import choose_threshold, classification_metrics
    from components.core.registry.selection import auc_or_lowest

    options = []
    for k in range(2, len(ranked) + 1):
        p_val = np.mean([s["val"] for s in scores[:k]], axis=0)
        p_test = np.mean([s["test"] for s in scores[:k]], axis=0)
        threshold = choose_threshold(val_labels, p_val, ranked[0].config.min_sensitivity)
        val = classification_metrics(val_labels, p_val, threshold)
        test = classification_metrics(test_labels, p_test, threshold)
        options.append({"k": k, "threshold": threshold, "val": val, "test": test, "p_val": p_val, "p_test": p_test})
    if not options:
        return None
    return min(options, key=lambda o: (-o["val"]["accuracy"], -auc_or_lowest(o["val"]["auc"]), o["k"]))


def beats(option: dict, single: TrainSummary) -> bool:
    """Strictly better than the best single model on validation (selection's order)."""
    from components.core.registry.selection import auc_or_lowest

    def key(val):
        return (val["accuracy"], auc_or_lowest(val["auc"]))

    return key(option["val"]) > key(single.val)


def consider(
    parsed: list[TrainSummary],
    stored: dict,
    val,
    test,
    experiment_id: str,
    artifact_path: str | None = None,
    artifact_uri: str = "",
) -> TrainSummary | None:
    """The ensemble candidate of this run's models, built and logged when it beats the best single
    model on validation; None otherwise (the reason is logged). ``artifact_path``/``artifact_uri``:
    where its Model artifact (model.keras + model.json + policy) goes, for serving. ``stored``: each
    model's stored scores by run id (tracking.load_scores; None where a run has none)."""
    from components.core.registry.selection import rank_key

    ranked, scores = [], []
    for r in sorted(parsed, key=rank_key):
        s = stored.get(r.run_id)
        if r.decision and s and len(s["val"]) == len(val) and len(s["test"]) == len(test):
            ranked.append(r)
            scores.append(s)
    if len(ranked) < 2:
        log.info("no ensemble candidate: %d model(s) with stored scores and a decision policy", len(ranked))
        return None
    option = best_average(ranked, scores, val.labels, test.labels)
    if not beats(option, ranked[0]):
        log.info(
            "the average of the best %d (val accuracy %.3f, AUC %.3f) does not beat %s (%.3f, %.3f)",
            option["k"],
            option["val"]["accuracy"],
            option["val"]["auc"],
            ranked[0].name,
            ranked[0].val["accuracy"],
            ranked[0].val["auc"],
        )
        return None
    return build(ranked[: option["k"]], option, val, test, experiment_id, artifact_path, artifact_uri)


def build(members: list[TrainSummary], option: dict, val, test, experiment_id, artifact_path, artifact_uri):
    """Load, average, score again, fit its policy, log it: the ensemble as a TrainSummary."""
    import dataclasses
    import json

    import mlflow

    from components.core.decision import DecisionPolicy, conformal
    from components.core.decision.features import split_features
    from components.core.evaluation.metrics import choose_threshold, classification_metrics
    from components.core.inference.model_dir import write_model_dir
    from components.core.modeling.ensemble import average_model
    from components.core.modeling.training import TrainResult, evaluate_policy, predict_proba
    from components.core.registry import lineage, tracking
    from components.core.settings import CLASSES
    from components.core.steps.train import draw_evaluation, subgroup_evidence

    started = time.perf_counter()
    best = members[0]
    name = f"{FAMILY}({'+'.join(m.name for m in members)})"
    model = average_model([mlflow.tensorflow.load_model(m.model_uri) for m in members])
    p_val, p_test = predict_proba(model, val), predict_proba(model, test)
    gap = max(np.abs(p_val - option["p_val"]).max(), np.abs(p_test - option["p_test"]).max())
    if gap > MAX_SCORE_GAP:
        raise RuntimeError(
            f"{name}: the loaded members' average differs from their stored scores by {gap:.2g}; the registered "
            "models are not the ones the training runs measured. Rerun training"
        )
    cfg = dataclasses.replace(best.config, family=FAMILY)
    threshold = choose_threshold(val.labels, p_val, cfg.min_sensitivity)
    member_policy = DecisionPolicy.from_files(
        tracking.load_decision_files(best.run_id), f"{best.name} (run {best.run_id})"
    )
    policy = DecisionPolicy(threshold, conformal.fit(val.labels, p_val, cfg.refer_coverage), member_policy.scope)
    referral, test_referred = evaluate_policy(
        policy, val, test, p_val, p_test, split_features(val), split_features(test)
    )
    result = TrainResult(
        model=model,
        config=cfg,
        history={},
        threshold=threshold,
        val=classification_metrics(val.labels, p_val, threshold),
        test=classification_metrics(test.labels, p_test, threshold),
        val_scores=p_val,
        test_scores=p_test,
        fold_scores=[],
        temperature=1.0,  # each member is calibrated; the mean of calibrated p is not scaled again
        seconds=0.0,
        params=int(model.count_params()),
        policy=policy,
        referral=referral,
        test_referred=test_referred,
    )
    listed = [{"name": m.name, "family": m.family, "run_id": m.run_id, "model_uri": m.model_uri} for m in members]
    trained_on = mlflow.artifacts.download_artifacts(run_id=best.run_id, artifact_path=tracking.TRAINED_ON_ARTIFACT)
    with open(trained_on) as fh:
        sources = [{"sha1": h} for h in json.load(fh)["sha1"]]
    tags = {
        "device": best.device,
        "data_fingerprint": best.lineage.get("data_fingerprint", ""),
        **lineage.version_tags(best.lineage),
        "ensemble_members": ",".join(f"{m['name']}={m['run_id']}" for m in listed),
    }
    with tracking.training_run(cfg, name, experiment_id, tags) as run:
        run.datasets = lineage.log_inputs(best.lineage) if best.lineage.get("datasets") else {}
        pngs, figures_error = draw_evaluation(name, result, val.labels, test.labels)
        result.seconds = time.perf_counter() - started
        logged = run.log_result(result, sources, pngs, figures_error)
        tracking.log_json({"members": listed, "k": len(members)}, "ensemble.json")
    subgroups = subgroup_evidence(result, test, logged.run_id)
    if artifact_path:
        meta = {
            "threshold": threshold,
            "image_size": cfg.image_size,
            "classes": list(CLASSES),
            "family": FAMILY,
            "mlflow_run_id": logged.run_id,
        }
        write_model_dir(artifact_path, model, meta, policy.files())
    log.info("ensemble %s built and logged in %.0f s", name, time.perf_counter() - started)
    return TrainSummary(
        name=name,
        family=FAMILY,
        run_id=logged.run_id,
        model_uri=logged.model_uri,
        threshold=threshold,
        val=result.val,
        test=result.test,
        params=result.params,
        seconds=result.seconds + sum(m.seconds for m in members),
        config=cfg,
        device=best.device,
        artifact_uri=artifact_uri if artifact_path else "",
        lineage=best.lineage,
        figures=logged.figures,
        decision=policy.summary(),
        referral=referral,
        subgroups=subgroups,
        members=listed,
    )
