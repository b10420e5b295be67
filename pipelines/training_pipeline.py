"""The pipeline: preprocess -> ParallelFor(train on GPU nodes) -> select and register.

``build_pipeline`` takes the settings KFP fixes at compile time (loop parallelism,
accelerator type, node placement); everything else is a run-time pipeline parameter.
The same function runs under ``kfp.local`` (``skin-cancer run``) and compiles for a
cluster (``skin-cancer compile``).
"""


from dataclasses import dataclass, field

from kfp import dsl

from components.core.registry import DEFAULT_MODEL_NAME
from components.core.tracking import DEFAULT_EXPERIMENT
from components.preprocess import preprocess
from components.select_register import select_and_register
from components.train import train

PIPELINE_NAME = "skin-cancer-training"

# Local defaults: CPU-sized families at 128 px. See README "Cluster configuration" for ImageNet on GPU.
DEFAULT_MODELS: list[dict] = [
    {"family": "basic"},
    {"family": "crossval", "folds": 3},
    {"family": "mobilenetv3"},
]


@dataclass
class CompileSettings:
    """What KFP fixes when the pipeline is compiled, not per run."""

    parallelism: int = 0  # 0 = every model at once (one GPU node each)
    accelerator_type: str = "nvidia.com/gpu"
    # Compile-time: kfp.local cannot resolve a pipeline parameter in a resource field inside
    # a ParallelFor, and one pipeline function must serve both local runs and the cluster.
    gpus_per_model: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    train_cpu: str = "4"
    train_memory: str = "16G"


def build_pipeline(settings: "CompileSettings | None" = None):
    s = settings or CompileSettings()

    @dsl.pipeline(name=PIPELINE_NAME, description="Train several skin-cancer classifiers side by side and register the best as @champion in MLflow.")
    def skin_cancer_pipeline(
        data_uri: str,
        models: list = DEFAULT_MODELS,
        image_size: int = 128,
        epochs: int = 20,
        batch_size: int = 32,
        learning_rate: float = 0.002,
        seed: int = 42,
        val_fraction: float = 0.15,
        max_bad_fraction: float = 0.01,
        mlflow_tracking_uri: str = "",
        experiment_name: str = DEFAULT_EXPERIMENT,
        registered_model_name: str = DEFAULT_MODEL_NAME,
    ) -> str:
        """Skin-cancer training pipeline.

        Args:
            data_uri: Raw images, s3://bucket/prefix (or a local path) in the layout {train,test}/{benign,malignant}/*.jpg.
            models: Model configs, one training task each, e.g. [{"family": "basic"}, {"family": "resnet50", "weights": "imagenet"}]; keys override the defaults below.
            image_size: Side in pixels that images are resized to for training.
            epochs: Maximum epochs per model (early stopping on validation AUC may end sooner).
            batch_size: Training batch size.
            learning_rate: Initial AdamW learning rate (cosine decay).
            seed: Seed for the train/validation split, initialisation and augmentation.
            val_fraction: Share of the train folder held out for validation (selection and threshold).
            max_bad_fraction: Fail when more than this share of files is unreadable.
            mlflow_tracking_uri: MLflow tracking server; empty uses MLFLOW_TRACKING_URI from the environment.
            experiment_name: MLflow experiment for the runs.
            registered_model_name: MLflow registered model that receives the @champion alias.
        """
        pre = preprocess(
            data_uri=data_uri, image_size=image_size, val_fraction=val_fraction, seed=seed,
            max_bad_fraction=max_bad_fraction, mlflow_tracking_uri=mlflow_tracking_uri,
            experiment_name=experiment_name,
        ).set_display_name("Preprocess images").set_cpu_request("2").set_memory_request("4G")
        with dsl.ParallelFor(models, parallelism=s.parallelism, name="train-models") as model_config:
            trained = train(
                model_config=model_config,
                train_data=pre.outputs["train_data"],
                val_data=pre.outputs["val_data"],
                test_data=pre.outputs["test_data"],
                epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                image_size=image_size, seed=seed, mlflow_tracking_uri=mlflow_tracking_uri,
                experiment_name=experiment_name, data_fingerprint=pre.outputs["fingerprint"],
                pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            ).set_display_name("Train model")
            trained.set_cpu_request(s.train_cpu).set_memory_request(s.train_memory)
            trained.set_accelerator_type(s.accelerator_type).set_accelerator_limit(s.gpus_per_model)
            _place(trained, s)
        chosen = select_and_register(
            results=dsl.Collected(trained.outputs["Output"]),
            val_data=pre.outputs["val_data"],
            test_data=pre.outputs["test_data"],
            mlflow_tracking_uri=mlflow_tracking_uri,
            experiment_name=experiment_name,
            registered_model_name=registered_model_name,
            data_fingerprint=pre.outputs["fingerprint"],
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        ).set_display_name("Select and register champion").set_cpu_request("2").set_memory_request("4G")
        return chosen.outputs["summary_json"]

    return skin_cancer_pipeline


def _place(task, s: CompileSettings) -> None:
    """Node selector and tolerations for GPU nodes (kfp-kubernetes), when configured."""
    if not (s.node_selector or s.tolerations):
        return
    from kfp import kubernetes

    for key, value in s.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for t in s.tolerations:
        kubernetes.add_toleration(task, key=t.get("key"), operator=t.get("operator", "Equal"),
                                  value=t.get("value"), effect=t.get("effect"))
