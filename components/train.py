"""Stage 2: train one model family (one GPU task in the fan-out), track it in MLflow."""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.core.settings import default_images


# The image is set per task by build_pipeline (CompileSettings.train_image); this is its default.
@dsl.component(base_image=default_images()[1], install_kfp_package=False)
def train(
    model_config: dict,
    train_data: Input[Dataset],
    val_data: Input[Dataset],
    test_data: Input[Dataset],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    refer_coverage: float,
    image_size: int,
    seed: int,
    mlflow_tracking_uri: str,
    experiment_name: str,
    data_fingerprint: str,
    model: Output[Model],
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
    train_image: str = "",
) -> str:
    """Train the model described by ``model_config`` (its keys override the pipeline defaults).
    ``train_image``: this task's own image reference, recorded with the model. Its own and no
    other: KFP's cache key holds the task's image already, so this adds no cache miss, whereas the
    runtime image's reference here would retrain every model when only that image is rebuilt (the
    selection step, which runs in the runtime image, records that one).
    ``refer_coverage``: the decision policy's conformal coverage level (components/core/decision)."""
    from components.core.steps.train import run_train

    return run_train(
        model_config=model_config,
        train_path=train_data.path,
        val_path=val_data.path,
        test_path=test_data.path,
        defaults={
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "refer_coverage": refer_coverage,
            "image_size": image_size,
            "seed": seed,
        },
        mlflow_tracking_uri=mlflow_tracking_uri,
        experiment_name=experiment_name,
        data_fingerprint=data_fingerprint,
        model_artifact=model,
        metrics_artifact=metrics,
        roc_artifact=roc,
        # Lineage for MLflow's dataset view: the raw data (preprocess put it in the artifacts'
        # metadata) and the artifacts' own URIs (s3:// on a cluster), not this pod's local paths.
        data_uri=str(train_data.metadata.get("source", "")),
        split_uris={"train": train_data.uri, "val": val_data.uri, "test": test_data.uri},
        pipeline_images=f"train={train_image}" if train_image else "",
    )
