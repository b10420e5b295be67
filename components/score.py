"""The scoring pipeline's stages: list and shard the new images, score a shard, report.

Thin components over components/core/steps/score.py and components/core/scoring (plain Python,
tested without KFP). None is
cached: each reads state outside its inputs (the prefix's listing, the predictions already
written, the registry's alias).
"""

from typing import Any, Dict, List, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from components.core.settings import default_images


# The image is set per task by build_scoring_pipeline (ScoringSettings.image); this is its default.
@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def list_images(data_uri: str, out_uri: str, shard_size: int) -> NamedTuple(
    "Listing", shards=List[Dict[str, Any]], image_count=int, run_name=str
):
    """Every file under ``data_uri`` (the output prefix left out), in shards of ``shard_size``;
    ``run_name`` names this run's predictions files."""
    from collections import namedtuple

    from components.core.steps.score import run_list_images

    return namedtuple("Listing", ["shards", "image_count", "run_name"])(*run_list_images(data_uri, out_uri, shard_size))


@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def score_shard(
    shard: Dict[str, Any],
    data_uri: str,
    out_uri: str,
    model_uri: str,
    run_name: str,
    mlflow_tracking_uri: str = "",
    batch_size: int = 64,
) -> str:
    """Score the shard's files this model version has not scored; write their rows as
    ``predictions/<run_name>-<index>.parquet``. Returns JSON: rows, already_scored, predictions_uri."""
    from components.core.steps.score import run_score_shard

    return run_score_shard(shard, data_uri, out_uri, model_uri, run_name, mlflow_tracking_uri, batch_size)


@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def report(
    shard_results: List[str],
    data_uri: str,
    out_uri: str,
    model_uri: str,
    run_name: str,
    worklist: Output[HTML],
    metrics: Output[Metrics],
    reference_uri: str = "",
    labels_uri: str = "",
    max_bad_fraction: float = 0.2,
    mlflow_tracking_uri: str = "",
    experiment_name: str = "skin-cancer",
    log_to_mlflow: bool = True,
) -> str:
    """Gather the shards' rows, monitor them against ``reference_uri`` (the model's validation
    split), join ``labels_uri``, write the worklist and one MLflow run; fail past
    ``max_bad_fraction``, naming the files. Returns the summary as JSON."""
    from components.core.steps.score import run_report

    return run_report(
        shard_results,
        data_uri,
        out_uri,
        model_uri,
        run_name,
        worklist.path,
        metrics,
        reference_uri,
        labels_uri,
        max_bad_fraction,
        mlflow_tracking_uri,
        experiment_name,
        log_to_mlflow,
    )
