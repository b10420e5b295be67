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
    image_size: int,
    seed: int,
    mlflow_tracking_uri: str,
    experiment_name: str,
    data_fingerprint: str,
    model: Output[Model],
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
) -> str:
    """Train the model described by ``model_config`` (its keys override the pipeline defaults)."""
    from components.core.stages import run_train

    return run_train(
        model_config, train_data.path, val_data.path, test_data.path,
        {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
         "image_size": image_size, "seed": seed},
        mlflow_tracking_uri, experiment_name, data_fingerprint, model, metrics, roc,
    )
