"""The scoring pipeline's steps: list and shard the new images, score a shard, report.

The components in ``components/score.py`` import these functions inside their bodies (KFP runs
only a function's own source in the container), so each step is callable and testable without
KFP. The work itself is in ``components/core/scoring``.
"""


def run_list_images(data_uri: str, out_uri: str, shard_size: int) -> tuple[list[dict], int, str]:
    """Every file under ``data_uri`` (the output prefix left out), in shards of ``shard_size``;
    returns (shards, image count, the run name that names this run's predictions files)."""
    from components.core.scoring import batch, run

    uris = batch.list_inputs(data_uri, out_uri)
    print(f"{data_uri}: {len(uris)} files")
    return run.shards(uris, shard_size), len(uris), batch.run_name()


def run_score_shard(
    shard: dict,
    data_uri: str,
    out_uri: str,
    model_uri: str,
    run_name: str,
    mlflow_tracking_uri: str = "",
    batch_size: int = 64,
) -> str:
    """Score the shard's files this model version has not scored; write their rows as
    ``predictions/<run_name>-<index>.parquet``. Returns JSON: rows, already_scored, predictions_uri."""
    import json

    from components.core.inference.runtime import SCORING_INTER_OP_THREADS, bound_model_memory

    # before TensorFlow's first op: within the task's memory request (issue 32)
    bound_model_memory(SCORING_INTER_OP_THREADS)

    from components.core.inference.predictor import Predictor
    from components.core.registry import tracking
    from components.core.scoring import run

    if model_uri.startswith(("models:/", "runs:/")):
        tracking.setup(mlflow_tracking_uri or None)
    predictor = Predictor.load(model_uri)
    result, uri = run.score_files(
        predictor, list(shard["uris"]), data_uri, out_uri, f"{run_name}-{int(shard['index']):04d}", batch_size
    )
    out = {
        "rows": len(result.rows),
        "errors": len(result.errors),
        "already_scored": result.already_scored,
        "predictions_uri": uri,
        "model_name": predictor.model_name,
        "model_version": predictor.model_version,
    }
    print(json.dumps(out))
    return json.dumps(out)


def run_report(
    shard_results: list[str],
    data_uri: str,
    out_uri: str,
    model_uri: str,
    run_name: str,
    worklist_path: str,
    metrics_artifact,
    reference_uri: str = "",
    labels_uri: str = "",
    max_bad_fraction: float = 0.2,
    mlflow_tracking_uri: str = "",
    experiment_name: str = "skin-cancer",
    log_to_mlflow: bool = True,
) -> str:
    """Gather the shards' rows, monitor them against ``reference_uri`` (the model's validation
    split), join ``labels_uri``, write the worklist (``worklist_path``) and one MLflow run; fail past
    ``max_bad_fraction``, naming the files. Returns the summary as JSON."""
    import json

    from components.core.inference.predictor import Predictor
    from components.core.registry import tracking
    from components.core.scoring import batch, run
    from components.core.scoring.report import render

    parts = [json.loads(r) for r in shard_results]
    if model_uri.startswith(("models:/", "runs:/")) or log_to_mlflow:
        tracking.setup(mlflow_tracking_uri or None, experiment_name)
    predictor = Predictor.load(model_uri)
    files = [p["predictions_uri"] for p in parts if p["predictions_uri"]]
    rows = batch.read_files(files)
    summary = run.finish(
        predictor,
        rows,
        sum(p["already_scored"] for p in parts),
        out_uri,
        ",".join(files) or None,
        reference_uri or None,
        labels_uri or None,
    )
    summary.update(model_name=predictor.model_name, model_version=predictor.model_version, run_name=run_name)
    page = render(rows, summary, data_uri, f"Scoring worklist: {run_name}")
    with open(worklist_path, "w") as fh:
        fh.write(page)
    for k, v in run.run_metrics(summary).items():
        metrics_artifact.log_metric(k, v)
    if log_to_mlflow:
        summary["mlflow_run_id"] = run.log_run(
            summary,
            page,
            {
                "data_uri": data_uri,
                "out_uri": out_uri,
                "model_uri": model_uri,
                "model_name": predictor.model_name,
                "model_version": predictor.model_version,
                "reference_uri": reference_uri,
                "labels_uri": labels_uri,
            },
            mlflow_tracking_uri,
            experiment_name,
            f"score-{run_name}",
            run.scored_dataset(data_uri, rows, run_name),
        )
    print(json.dumps({k: v for k, v in summary.items() if k != "signals"}, default=str))
    batch.check_bad_fraction(rows, max_bad_fraction)  # after the worklist: it names the bad files too
    return json.dumps(summary, default=str)
