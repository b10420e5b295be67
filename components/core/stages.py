"""The plain-Python bodies of the pipeline stages.

Each ``@dsl.component`` in ``components/`` imports one function from here inside its
body (KFP runs only the function's own source in the container), so the stages are
callable and testable without KFP. This module must not import ``kfp.dsl`` decorators:
inside a running component, ``kfp.dsl`` is the slim runtime package.
"""

def run_preprocess(
    data_uri: str,
    image_size: int,
    val_fraction: float,
    seed: int,
    max_bad_fraction: float,
    mlflow_tracking_uri: str,
    experiment_name: str,
    artifacts: dict,
    allow_leakage: bool = False,
):
    """The component's body, as plain Python: preprocess, annotate artifacts, log to MLflow."""
    import json
    import logging
    from collections import namedtuple

    import mlflow

    from components.core import dataset, tracking

    logging.basicConfig(level=logging.INFO)
    experiment_id = tracking.setup(mlflow_tracking_uri, experiment_name)  # fail before any work
    report = dataset.preprocess(
        data_uri,
        {name: art.path for name, art in artifacts.items()},
        image_size=image_size,
        val_fraction=val_fraction,
        seed=seed,
        max_bad_fraction=max_bad_fraction,
        allow_leakage=allow_leakage,
    )
    for name, art in artifacts.items():
        art.metadata.update(
            {
                "split": name,
                "count": report.splits[name]["count"],
                "class_counts": report.splits[name]["class_counts"],
                "image_size": image_size,
                "fingerprint": report.fingerprint,
                "source": data_uri,
                "skipped": len(report.skipped),
                "class_balance": report.class_balance[name],
                "duplicate_groups": len(report.duplicates),
                "leakage_groups": len(report.leakage),
            }
        )
    with tracking.start_run(experiment_id, f"preprocess-{report.fingerprint}"):
        mlflow.set_tags({"stage": "preprocess", "data_fingerprint": report.fingerprint})
        mlflow.log_params({"data_uri": tracking.redact(data_uri), "image_size": image_size,
                           "val_fraction": val_fraction, "seed": seed, "allow_leakage": allow_leakage})
        mlflow.log_metrics(
            {f"{s}_{c}": n for s, v in report.splits.items() for c, n in v["class_counts"].items()}
            | {f"{s}_class_ratio": b["ratio"] for s, b in report.class_balance.items() if b["ratio"] is not None}
            | {"skipped": len(report.skipped), "images_per_second": report.images_per_second,
               "duplicate_groups": len(report.duplicates), "leakage_groups": len(report.leakage)}
        )
        tracking.log_json(report.to_dict(), "preprocess_report.json")
    out = namedtuple("PreprocessOutputs", ["fingerprint", "report"])
    return out(report.fingerprint, json.dumps(report.to_dict()))


def run_train(
    model_config: dict,
    train_path: str,
    val_path: str,
    test_path: str,
    defaults: dict,
    mlflow_tracking_uri: str,
    experiment_name: str,
    data_fingerprint: str,
    model_artifact=None,
    metrics_artifact=None,
    roc_artifact=None,
    data_uri: str = "",
    split_uris: dict | None = None,
    pipeline_images: str = "",
) -> str:
    """Plain-Python body of the train component: train inside the model's MLflow run
    (tracking.training_run), then write the KFP outputs; returns the :class:`TrainSummary` as JSON
    for selection (a string across KFP: the compiled interface stays ``str``).

    ``data_uri`` (the raw images) and ``split_uris`` (the preprocessed artifacts' URIs, by split;
    default: the paths) are what the run records as its MLflow datasets (lineage.py), and
    ``pipeline_images`` the training image (``train=REF``; the selection step adds the runtime one)."""
    import json
    import logging

    from components.core import lineage, tracking
    from components.core.dataset import open_splits
    from components.core.step_results import TrainSummary
    from components.core.train_config import model_config as parse_model_config
    from components.core.training import configure_devices, train_model

    logging.basicConfig(level=logging.INFO)
    name, cfg = parse_model_config(model_config, defaults)
    experiment_id = tracking.setup(mlflow_tracking_uri, experiment_name)  # fail before training
    splits = open_splits(train_path, val_path, test_path)  # checksums, and one preprocessing run
    if splits[0].image_size != cfg.image_size:
        raise ValueError(
            f"{train_path}: preprocessed at {splits[0].image_size}px but image_size is {cfg.image_size}; "
            "preprocess and train must use the same image_size"
        )
    _, device = configure_devices(cfg.precision)
    # The data_fingerprint parameter, else the one in the splits' manifest (open_splits checked that
    # all three agree). Under kfp.local (2.17) a task output passed into a ParallelFor arrives as the
    # loop item instead (kfp/local/orchestrator/task_spec_utils.py,
    # create_parameter_loop_iteration_task_spec): there the parameter holds the model config.
    given = data_fingerprint if isinstance(data_fingerprint, str) else ""
    fingerprint = given or str(splits[0].manifest.get("fingerprint", ""))
    uris = {"train": train_path, "val": val_path, "test": test_path, **(split_uris or {})}
    inputs = lineage.describe(data_uri, fingerprint, uris,
                              dict(zip(("train", "val", "test"), (s.manifest for s in splits))), pipeline_images)
    tags = {"device": device, "data_fingerprint": fingerprint, **lineage.version_tags(inputs)}
    with tracking.training_run(cfg, name, experiment_id, tags) as run:
        run.datasets = lineage.log_inputs(inputs)
        result = train_model(cfg, *splits, on_epoch=run.on_epoch)
        logged = run.log_result(result, splits[0].manifest.get("sources", []),
                                figures=lambda r: _evaluation_pngs(name, r, splits[1].labels, splits[2].labels))
    summary = TrainSummary(
        name=name, family=cfg.family, run_id=logged.run_id, model_uri=logged.model_uri,
        threshold=result.threshold, val=result.val, test=result.test, params=result.params,
        seconds=result.seconds, config=cfg, temperature=result.temperature, folds=result.fold_scores,
        device=device, artifact_uri=getattr(model_artifact, "uri", "") or "", lineage=inputs,
        figures=logged.figures,
        # The decision policy's readable part and how it referred (the model card's "When the model refers").
        decision=result.policy.summary() if result.policy is not None else None,
        referral=result.referral or None,
    )
    write_train_outputs(result, cfg, logged, splits[2].labels, model_artifact, metrics_artifact, roc_artifact)
    print(json.dumps(summary.brief(), default=float))
    return summary.to_json()


def _evaluation_pngs(name: str, result, val_labels, test_labels) -> dict:
    """The per-model figures (figures.py imports matplotlib: only here, when they are drawn)."""
    from components.core import figures

    return figures.evaluation_pngs(name, result.threshold, result.history, val_labels, result.val_scores,
                                   test_labels, result.test_scores, result.referral,
                                   result.policy.sets["level"] if result.policy is not None else None)


def write_train_outputs(result, cfg, logged, test_labels, model_artifact=None, metrics_artifact=None,
                        roc_artifact=None) -> None:
    """The train task's KFP outputs: the Model artifact (model.keras + model.json, what serving
    loads), the Metrics the dashboard lists, and the ClassificationMetrics it draws."""
    from components.core import tracking
    from components.core.metrics import roc_points
    from components.core.settings import CLASSES

    if model_artifact is not None:
        write_model_dir(model_artifact.path, result.model,
                        {"threshold": result.threshold, "image_size": cfg.image_size, "classes": list(CLASSES),
                         "family": cfg.family, "mlflow_run_id": logged.run_id},
                        result.policy.files() if result.policy is not None else None)
        model_artifact.metadata.update({"framework": "keras", "family": cfg.family, "mlflow_run_id": logged.run_id,
                                        "mlflow_model_uri": logged.model_uri, "threshold": result.threshold})
    if metrics_artifact is not None:
        for k, v in (tracking.flat_metrics("val", result.val) | tracking.flat_metrics("test", result.test)).items():
            metrics_artifact.log_metric(k, v)
    if roc_artifact is not None:
        roc_artifact.log_confusion_matrix(list(CLASSES), result.test["confusion_matrix"])
        fpr, tpr, thr = roc_points(test_labels, result.test_scores)
        roc_artifact.log_roc_curve(fpr, tpr, thr)


def write_model_dir(path: str, model, meta: dict, extra_files: dict[str, bytes] | None = None) -> None:
    """Write ``model.keras``, ``model.json`` and ``extra_files`` (the decision policy's) to
    ``path`` atomically: all go to a temporary
    sibling directory, which is renamed into place last. A task killed half way leaves no
    ``path`` at all, never a directory with a model but no metadata (or a torn file)."""
    import json
    import os
    import shutil
    import tempfile

    final = os.path.abspath(path)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(final)}.partial-")
    try:
        model.save(os.path.join(tmp, "model.keras"))
        with open(os.path.join(tmp, "model.json"), "w") as fh:
            json.dump(meta, fh)
        for name, data in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "wb") as fh:
                fh.write(data)
        if os.path.isdir(final):
            shutil.rmtree(final)  # a retried task's earlier (complete) output
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run_select_and_register(
    results: list,
    val_path: str,
    test_path: str,
    mlflow_tracking_uri: str,
    experiment_name: str,
    registered_model_name: str,
    data_fingerprint: str,
    summary_path: str | None = None,
    dashboard_path: str | None = None,
    card_path: str | None = None,
    runtime_image: str = "",
):
    """Select on validation, register, compare with @champion; then what people look at: the
    Markdown summary, the model card (MLflow, KFP output, beside the Model artifact) and the
    dashboard's HTML page with every model's curves. ``runtime_image``: the image this step runs
    in, recorded with the training image the winner's run recorded (lineage.with_runtime_image)."""
    import json
    import logging
    from collections import namedtuple

    from components.core import lineage, model_card, promotion_report, registry, selection, settings, tracking
    from components.core.dataset import open_splits
    from components.core.step_results import ModelResult, RegisteredVersion, SelectionSummary, TrainSummary

    logging.basicConfig(level=logging.INFO)
    tracking.setup(mlflow_tracking_uri, experiment_name)
    parsed = [TrainSummary.from_json(r) for r in results]
    winner = selection.select_winner(parsed)
    winner.lineage = lineage.with_runtime_image(winner.lineage, runtime_image)
    tags = {
        "pipeline_run": settings.run_id(),
        "data_fingerprint": data_fingerprint,
        "family": winner.family,
        "model_name": winner.name,
        "val_accuracy": f"{winner.val['accuracy']:.4f}",
        "val_auc": f"{winner.val['auc']:.4f}",
        "test_accuracy": f"{winner.test['accuracy']:.4f}",
        "threshold": f"{winner.threshold:.4f}",
        **lineage.version_tags(winner.lineage),
        "model_card": f"runs:/{winner.run_id}/{model_card.CARD_FILE}",
    }
    val, test = open_splits(val_path, test_path)
    reg = registry.register_winner(winner, registered_model_name, val, test, tags)
    markdown = promotion_report.summary_markdown(parsed, winner, reg)
    card, page, problem = selection_report(parsed, winner, reg, val, test)
    if problem:
        markdown += (f"\n\nThe model card is in MLflow but not beside the Model artifact ({problem}); "
                     "a server started from that folder has no /model-card.")
    for path, text in ((summary_path, markdown), (card_path, card), (dashboard_path, page)):
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    print(markdown)
    summary = SelectionSummary(
        models=[ModelResult.of(r) for r in parsed],
        winner=winner.name,
        registered_model=RegisteredVersion(reg.name, reg.version, reg.alias, reg.model_uri, reg.champion_version,
                                           reg.champion_changed),
        previous_champion=reg.previous_champion,
        data_fingerprint=data_fingerprint,
    )
    out = namedtuple("Registration", ["model_name", "model_version", "model_uri", "champion_changed", "summary_json",
                                      "model_artifact_uri"])
    return out(reg.name, reg.version, reg.model_uri, reg.champion_changed, summary.to_json(), winner.artifact_uri)


def selection_report(parsed: list, winner, reg, val, test) -> tuple[str, str, str | None]:
    """What the selection step shows, kept with the registered version: the comparison figures
    (MLflow ``selection/``), the model card (MLflow ``model_card.md`` and beside the Model
    artifact) and the dashboard page (MLflow ``selection/dashboard.html``).
    Returns (card, page, why the card is not beside the Model artifact, or None)."""
    import logging

    from components.core import model_card, tracking

    by_split, missing = _comparison_pngs(parsed, winner, val, test)
    pngs = {f"compare_{split}.png": png for split, png in by_split.items()}
    selection_figures = tracking.log_pngs(pngs, "selection", run_id=winner.run_id) if pngs else []
    card = model_card.build(winner, reg, parsed, [*winner.figures, *selection_figures])
    tracking.log_text(card, model_card.CARD_FILE, winner.run_id)
    problem = model_card.write_beside_model(card, winner.artifact_uri)
    if problem:
        logging.getLogger(__name__).warning("model card not written beside the Model artifact: %s", problem)
    from components.core import dashboard

    page = dashboard.render(parsed, winner, reg, by_split, card, missing)
    tracking.log_text(page, "selection/dashboard.html", winner.run_id)
    return card, page, problem


def _comparison_pngs(parsed: list, winner, val, test) -> tuple[dict[str, bytes], list[str]]:
    """Every model's curves on validation and on test (PNG by split), from the scores each
    training run kept in MLflow; and the models without scores (an older run). A drawing failure leaves the
    registration standing: it is logged and the page says so."""
    import logging

    import numpy as np

    from components.core import tracking

    curves: dict[str, list] = {"val": [], "test": []}
    missing = []
    try:
        from components.core import figures

        for r in parsed:
            scores = tracking.load_scores(r.run_id)
            if not scores or len(scores["val"]) != len(val) or len(scores["test"]) != len(test):
                missing.append(f"{r.name} (its MLflow run kept no scores for these images)")
                continue
            for split, labels in (("val", val.labels), ("test", test.labels)):
                curves[split].append(figures.Scored(r.name, np.asarray(labels).astype(int),
                                                    np.asarray(scores[split], dtype=float), r.threshold))
        return ({split: figures.comparison_png(models, split, winner.name)
                 for split, models in curves.items() if models}, missing)
    except Exception as err:
        logging.getLogger(__name__).exception("could not draw the comparison figures")
        return {}, [f"any model (drawing failed: {type(err).__name__}: {err})"]

