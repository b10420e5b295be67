"""The scoring pipeline: list the new images -> ParallelFor(shards): score -> report (worklist,
monitoring, one MLflow run).

``build_scoring_pipeline`` takes what KFP fixes at compile time (images, loop parallelism,
retries); everything else is a run-time parameter. The same function runs under ``kfp.local``
(``skin-cancer score``) and compiles for a cluster (``skin-cancer compile --pipeline scoring``).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List

from kfp import dsl

from components.core import settings
from components.score import list_images, report, score_shard
from pipelines.tasks import CONFIG_MAP, MLFLOW_SECRET, S3_SECRET, on_cluster

PIPELINE_NAME = settings.SCORING_PIPELINE_NAME


@dataclass
class ScoringSettings:
    """What KFP fixes when the scoring pipeline is compiled."""

    image: str = field(default_factory=lambda: settings.default_images()[0])
    parallelism: int = 4  # shards scored at once
    # Retries on the listing and the report (they touch S3 and MLflow); none inside the loop,
    # where KFP ignores them (tests/ir_rules.py). See training_pipeline.CompileSettings.retries.
    retries: int = 3
    retry_backoff: str = "30s"
    score_cpu: str = "2"
    score_memory: str = "4G"


def build_scoring_pipeline(compile_settings: "ScoringSettings | None" = None):
    s = compile_settings or ScoringSettings()

    # The loop and the report in a sub-DAG whose input is the listing: kfp.local resolves a
    # ParallelFor's items only from the enclosing pipeline's inputs, not from a task's output;
    # on a cluster the two shapes compile to the same loop.
    @dsl.pipeline(name="score-and-report")
    def score_and_report(
        shards: List[Dict[str, Any]],
        run_name: str,
        data_uri: str,
        out_uri: str,
        model_uri: str,
        reference_uri: str,
        labels_uri: str,
        batch_size: int,
        max_bad_fraction: float,
        mlflow_tracking_uri: str,
        experiment_name: str,
        s3_secret: str,
        mlflow_secret: str,
        config_map: str,
    ) -> str:
        env = dict(s3_secret=s3_secret, mlflow_secret=mlflow_secret, config_map=config_map)
        with dsl.ParallelFor(shards, parallelism=s.parallelism, name="score-shards") as shard:
            scored = score_shard(
                shard=shard,
                data_uri=data_uri,
                out_uri=out_uri,
                model_uri=model_uri,
                run_name=run_name,
                mlflow_tracking_uri=mlflow_tracking_uri,
                batch_size=batch_size,
            )
            # Never cached: what it skips depends on the predictions already written, not its inputs.
            scored.set_display_name("Score a shard").set_caching_options(False)
            scored.set_cpu_request(s.score_cpu).set_memory_request(s.score_memory)
            on_cluster(scored, 0, s, **env)
        reported = (
            report(
                shard_results=dsl.Collected(scored.output),
                data_uri=data_uri,
                out_uri=out_uri,
                model_uri=model_uri,
                run_name=run_name,
                reference_uri=reference_uri,
                labels_uri=labels_uri,
                max_bad_fraction=max_bad_fraction,
                mlflow_tracking_uri=mlflow_tracking_uri,
                experiment_name=experiment_name,
            )
            .set_display_name("Worklist and monitoring")
            .set_caching_options(False)
        )
        reported.set_cpu_request("1").set_memory_request("4G")
        on_cluster(reported, s.retries, s, **env)
        return reported.outputs["Output"]

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Score the new images under a prefix with the champion: predictions (Parquet), "
        "a worklist and drift monitoring.",
    )
    def skin_cancer_scoring(
        data_uri: str,
        out_uri: str,
        model_uri: str = f"models:/{settings.REGISTERED_MODEL_NAME}@champion",
        reference_uri: str = "",
        labels_uri: str = "",
        shard_size: int = 500,
        batch_size: int = settings.SCORE_BATCH,
        max_bad_fraction: float = settings.SCORING_MAX_BAD_FRACTION,
        mlflow_tracking_uri: str = "",
        experiment_name: str = settings.EXPERIMENT,
        s3_secret: str = S3_SECRET,
        mlflow_secret: str = MLFLOW_SECRET,
        config_map: str = CONFIG_MAP,
    ) -> str:
        """Skin-cancer scoring pipeline.

        Args:
            data_uri: Prefix of new images (s3://bucket/prefix or a local path), any layout.
            out_uri: Where predictions go (Parquet under predictions/); also what was scored before.
            model_uri: The model: models:/NAME@ALIAS, models:/NAME/VERSION, or a Model artifact directory.
            reference_uri: A preprocessed split to monitor against (the training run's val Dataset); empty: the reference stored with the model version.
            labels_uri: CSV of key,label (labels that arrived later, e.g. biopsies) joined to the rows scored so far.
            shard_size: Files per scoring task.
            batch_size: Images per forward pass.
            max_bad_fraction: Fail the run when more than this share of files cannot be scored (the report names them).
            mlflow_tracking_uri: MLflow tracking server; empty uses MLFLOW_TRACKING_URI from the environment.
            experiment_name: MLflow experiment of the scoring run (the model's).
            s3_secret: Kubernetes Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (cluster only).
            mlflow_secret: Kubernetes Secret with MLFLOW_TRACKING_USERNAME/PASSWORD; may be absent (cluster only).
            config_map: Kubernetes ConfigMap with AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, MLFLOW_TRACKING_URI (cluster only).
        """
        listed = list_images(data_uri=data_uri, out_uri=out_uri, shard_size=shard_size)
        listed.set_display_name("List new images").set_caching_options(False)
        listed.set_cpu_request("500m").set_memory_request("1G")
        on_cluster(listed, s.retries, s, s3_secret=s3_secret, mlflow_secret=mlflow_secret, config_map=config_map)
        scored = score_and_report(
            shards=listed.outputs["shards"],
            run_name=listed.outputs["run_name"],
            data_uri=data_uri,
            out_uri=out_uri,
            model_uri=model_uri,
            reference_uri=reference_uri,
            labels_uri=labels_uri,
            batch_size=batch_size,
            max_bad_fraction=max_bad_fraction,
            mlflow_tracking_uri=mlflow_tracking_uri,
            experiment_name=experiment_name,
            s3_secret=s3_secret,
            mlflow_secret=mlflow_secret,
            config_map=config_map,
        ).set_display_name("Score and report")
        return scored.output

    return skin_cancer_scoring
