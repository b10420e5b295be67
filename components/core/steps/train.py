"""The train step: one model family trained, evaluated and recorded (MLflow, the KFP outputs).

Called by ``components/train.py`` (see this package's docstring).
"""


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

    from components.core.data.dataset import open_splits
    from components.core.modeling.train_config import model_config as parse_model_config
    from components.core.modeling.training import configure_devices, train_model
    from components.core.registry import lineage, tracking
    from components.core.step_results import TrainSummary

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
    inputs = lineage.describe(
        data_uri, fingerprint, uris, dict(zip(("train", "val", "test"), (s.manifest for s in splits))), pipeline_images
    )
    tags = {"device": device, "data_fingerprint": fingerprint, **lineage.version_tags(inputs)}
    # The model's MLflow run is open from the start, so each epoch's metrics appear as it ends and a
    # training that fails leaves a FAILED run; inside it the step computes, then records.
    with tracking.training_run(cfg, name, experiment_id, tags) as run:
        run.datasets = lineage.log_inputs(inputs)
        # Compute: train, evaluate on validation and test, fit the decision policy; draw the figures.
        result = train_model(cfg, *splits, on_epoch=run.on_epoch)
        pngs, figures_error = draw_evaluation(name, result, splits[1].labels, splits[2].labels)
        # Record: the model, metrics, evaluation, scores, decision policy and figures, in one place.
        logged = run.log_result(result, splits[0].manifest.get("sources", []), pngs, figures_error)
        # How it does per skin tone, image size and brightness on test, with the subgroup_recall gate.
        subgroups = subgroup_evidence(result, splits[2], logged.run_id)
    summary = TrainSummary(
        name=name,
        family=cfg.family,
        run_id=logged.run_id,
        model_uri=logged.model_uri,
        threshold=result.threshold,
        val=result.val,
        test=result.test,
        params=result.params,
        seconds=result.seconds,
        config=cfg,
        temperature=result.temperature,
        folds=result.fold_scores,
        device=device,
        artifact_uri=getattr(model_artifact, "uri", "") or "",
        lineage=inputs,
        figures=logged.figures,
        # The decision policy's readable part and how it referred (the model card's "When the model refers").
        decision=result.policy.summary() if result.policy is not None else None,
        referral=result.referral or None,
        subgroups=subgroups,
    )
    write_train_outputs(result, cfg, logged, splits[2].labels, model_artifact, metrics_artifact, roc_artifact)
    print(json.dumps(summary.brief(), default=float))
    return summary.to_json()


def draw_evaluation(name: str, result, val_labels, test_labels) -> tuple[dict[str, bytes], str]:
    """The per-model figures (PNG bytes by file name), and why there are none ("" when drawn).
    A drawing failure must not throw away a trained model: it is logged with its traceback and
    recorded in the run's ``figures_error`` tag instead."""
    import logging

    try:
        return evaluation_pngs(name, result, val_labels, test_labels), ""
    except Exception as err:
        logging.getLogger(__name__).exception("could not draw the evaluation figures")
        return {}, f"{type(err).__name__}: {err}"


SUBGROUPS_JSON, SUBGROUPS_PNG = "subgroups.json", "subgroups.png"


def subgroup_evidence(result, test, run_id: str) -> dict:
    """The evidence per subgroup on the test split (evaluation/subgroups.py), logged to the run as
    ``subgroups.json`` and ``subgroups.png``; returns what selection and the model card read:
    {"uri", "sha256" (of the logged JSON's bytes), "png", "gate", "table"}. Like the figures, a
    failure here must not throw away a trained model: it is logged with its traceback, recorded in
    the run's ``subgroups_error`` tag and returned as {"error": ...}."""
    import hashlib
    import json
    import logging
    import tempfile
    import time
    from pathlib import Path

    import mlflow

    from components.core.evaluation import subgroups
    from components.core.scoring.labels import recall_floor

    try:
        started = time.perf_counter()
        attributes = subgroups.image_attributes(test.batches(subgroups.BATCH), test.manifest.get("sources", []))
        report = subgroups.subgroup_report(
            test.labels, result.test_scores, result.threshold, result.test_referred, attributes, subgroups.N_BOOT
        )
        report["gate"] = subgroups.subgroup_recall_gate(report, recall_floor({"test": result.test}))
        data = json.dumps(report, indent=1).encode()  # ASCII (ensure_ascii): the bytes hashed are the bytes logged
        png = subgroups.subgroups_png(report)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, SUBGROUPS_JSON).write_bytes(data)
            Path(tmp, SUBGROUPS_PNG).write_bytes(png)
            mlflow.MlflowClient().log_artifacts(run_id, tmp)
        logging.getLogger(__name__).info(
            "evidence per subgroup in %.1f s: gate %s", time.perf_counter() - started, report["gate"]["detail"]
        )
        return {
            "uri": f"runs:/{run_id}/{SUBGROUPS_JSON}",
            "sha256": hashlib.sha256(data).hexdigest(),
            "png": f"runs:/{run_id}/{SUBGROUPS_PNG}",
            "gate": report["gate"],
            "table": subgroups.markdown_table(report),
        }
    except Exception as err:
        logging.getLogger(__name__).exception("could not compute the evidence per subgroup")
        error = f"{type(err).__name__}: {err}"
        try:
            mlflow.MlflowClient().set_tag(run_id, "subgroups_error", error[:500])
        except Exception:
            logging.getLogger(__name__).exception("could not tag the run with the subgroups error")
        return {"error": error}


def evaluation_pngs(name: str, result, val_labels, test_labels) -> dict[str, bytes]:
    """The per-model figures (figures.py imports matplotlib: only here, when they are drawn)."""
    from components.core.evaluation import figures

    return figures.evaluation_pngs(
        name,
        result.threshold,
        result.history,
        val_labels,
        result.val_scores,
        test_labels,
        result.test_scores,
        result.referral,
        result.policy.sets["level"] if result.policy is not None else None,
    )


def write_train_outputs(
    result, cfg, logged, test_labels, model_artifact=None, metrics_artifact=None, roc_artifact=None
) -> None:
    """The train task's KFP outputs: the Model artifact (model.keras + model.json, what serving
    loads), the Metrics the dashboard lists, and the ClassificationMetrics it draws."""
    from components.core.evaluation.metrics import roc_points
    from components.core.inference.model_dir import write_model_dir
    from components.core.registry import tracking
    from components.core.settings import CLASSES

    if model_artifact is not None:
        write_model_dir(
            model_artifact.path,
            result.model,
            {
                "threshold": result.threshold,
                "image_size": cfg.image_size,
                "classes": list(CLASSES),
                "family": cfg.family,
                "mlflow_run_id": logged.run_id,
            },
            result.policy.files() if result.policy is not None else None,
        )
        model_artifact.metadata.update(
            {
                "framework": "keras",
                "family": cfg.family,
                "mlflow_run_id": logged.run_id,
                "mlflow_model_uri": logged.model_uri,
                "threshold": result.threshold,
            }
        )
    if metrics_artifact is not None:
        for k, v in (tracking.flat_metrics("val", result.val) | tracking.flat_metrics("test", result.test)).items():
            metrics_artifact.log_metric(k, v)
    if roc_artifact is not None:
        roc_artifact.log_confusion_matrix(list(CLASSES), result.test["confusion_matrix"])
        fpr, tpr, thr = roc_points(test_labels, result.test_scores)
        roc_artifact.log_roc_curve(fpr, tpr, thr)
