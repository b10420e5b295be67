"""The pipeline: fingerprint -> preprocess -> ParallelFor(train on GPU nodes) -> select and register.

``build_pipeline`` takes the settings KFP fixes at compile time (loop parallelism,
accelerator type, node placement); everything else is a run-time pipeline parameter.
The same function runs under ``kfp.local`` (``skin-cancer run``) and compiles for a
cluster (``skin-cancer compile``).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List

from kfp import dsl

from components.core import settings
from components.fingerprint import fingerprint_data
from components.preprocess import preprocess
from components.select_register import select_and_propose, select_and_register
from components.train import train
from pipelines.presets import LOCAL_CPU
from pipelines.tasks import CONFIG_MAP, MLFLOW_SECRET, S3_SECRET, deploy_and_check, on_cluster, on_gpu_nodes

PIPELINE_NAME = settings.PIPELINE_NAME

# The pipeline's own defaults are the CPU preset (pipelines/presets.py); a cluster compile can
# swap in another preset with `skin-cancer compile --preset imagenet-gpu`.
DEFAULT_MODELS: list[dict] = LOCAL_CPU["models"]


@dataclass
class CompileSettings:
    """What KFP fixes when the pipeline is compiled, not per run."""

    # Container images: the training image runs preprocessing and training, the runtime image
    # every other task (why: build_pipeline, at the preprocess task).
    image: str = field(default_factory=lambda: settings.default_images()[0])
    train_image: str = field(default_factory=lambda: settings.default_images()[1])

    parallelism: int = 0  # 0 = every model at once (one GPU node each)
    accelerator_type: str = "nvidia.com/gpu"
    # Compile-time: kfp.local cannot resolve a pipeline parameter in a resource field inside
    # a ParallelFor, and one pipeline function must serve both local runs and the cluster.
    gpus_per_model: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    train_cpu: str = "4"
    train_memory: str = "16G"
    # Task retries with exponential backoff for the steps that touch S3 or MLflow. They cover a
    # step that *Failed* (its container exited non-zero: S3 or MLflow down for longer than the
    # clients' own retries, a server restarting, an OOM kill), not one that *Errored*: KFP compiles
    # the policy into an Argo retryStrategy with no retryPolicy
    # (backend/src/v2/compiler/argocompiler/container.go, getTaskRetryStrategyFromInput), and
    # Argo's default, OnFailure, does not retry Errored nodes, e.g. a pod deleted or lost with its
    # node. kfp.local honours the retries too, so `skin-cancer run` sets 0: locally botocore and
    # MLflow already retry their requests. Training has none: KFP ignores a retry policy on a task
    # inside a ParallelFor (upstream issues 12389 and 13897). A run that fails either way is
    # submitted again and reuses every finished step from KFP's cache (docs/cluster.md, "Retries").
    retries: int = 3
    # Propose, don't promote: the selection task is select_and_propose (it cannot move @champion)
    # and the pipeline has no deploy task; a person approves (skin-cancer approve). Fixed at compile
    # time, not a run-time parameter: whoever can start a run from the dashboard could flip a
    # parameter, while the compiled pipeline version is what an admin uploads and reviews.
    # `compile`, `submit` and `schedule create` default to True; `skin-cancer run` to False.
    require_approval: bool = False
    # Overrides of the pipeline parameters' default values in the compiled YAML (a preset).
    parameter_defaults: dict = field(default_factory=dict)
    retry_backoff: str = "30s"

    def image_refs(self) -> str:
        """The images, as the registered version records them (lineage.py): the training step is
        given only its own reference and the selection step adds the runtime one (constant task
        inputs, not environment variables: the compiled containers carry no env at all)."""
        return f"runtime={self.image},train={self.train_image}"


def build_pipeline(compile_settings: "CompileSettings | None" = None):
    s = compile_settings or CompileSettings()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "Train several skin-cancer classifiers side by side and propose the best for a person's approval "
            "(@challenger in MLflow; never moves @champion, never deploys)."
            if s.require_approval
            else "Train several skin-cancer classifiers side by side and register the best as @champion in MLflow."
        ),
    )
    def skin_cancer_pipeline(
        data_uri: str,
        # Typed items: the loop item then compiles as STRUCT, the type train's model_config
        # declares (a bare `list` compiles it as STRING, which KFP's driver rejects).
        models: List[Dict[str, Any]] = DEFAULT_MODELS,
        image_size: int = LOCAL_CPU["image_size"],
        epochs: int = LOCAL_CPU["epochs"],
        batch_size: int = LOCAL_CPU["batch_size"],
        learning_rate: float = LOCAL_CPU["learning_rate"],
        refer_coverage: float = settings.REFER_COVERAGE,
        seed: int = settings.SEED,
        val_fraction: float = settings.VAL_FRACTION,
        max_bad_fraction: float = settings.MAX_BAD_FRACTION,
        allow_leakage: bool = False,
        mlflow_tracking_uri: str = "",
        experiment_name: str = settings.EXPERIMENT,
        registered_model_name: str = settings.REGISTERED_MODEL_NAME,
        s3_secret: str = S3_SECRET,
        mlflow_secret: str = MLFLOW_SECRET,
        config_map: str = CONFIG_MAP,
        deploy: bool = False,
        serving_namespace: str = "",
        inference_service_name: str = "skin-cancer",
        serving_service_account: str = settings.SERVING_SERVICE_ACCOUNT,
        submitted_by: str = "",
    ) -> str:
        """Skin-cancer training pipeline.

        Args:
            data_uri: Raw images, s3://bucket/prefix (or a local path) in the layout {train,test}/{benign,malignant}/*.jpg.
            models: Model configs, one training task each, e.g. [{"family": "basic"}, {"family": "resnet50", "weights": "imagenet"}]; keys override the defaults below.
            image_size: Side in pixels that images are resized to for training.
            epochs: Maximum epochs per model (early stopping on validation AUC may end sooner).
            batch_size: Training batch size.
            learning_rate: Initial AdamW learning rate (cosine decay).
            refer_coverage: Conformal coverage level of each class's prediction set, fitted on validation; an image whose set is not exactly the threshold's class is referred as uncertain (the default is settings.REFER_COVERAGE, the compiled parameter's defaultValue).
            seed: Seed for the train/validation split, initialisation and augmentation.
            val_fraction: Share of the train folder held out for validation (selection and threshold).
            max_bad_fraction: Fail when more than this share of files is unreadable.
            allow_leakage: Accept test images whose bytes also appear in train/val (otherwise the run fails).
            mlflow_tracking_uri: MLflow tracking server; empty uses MLFLOW_TRACKING_URI from the environment.
            experiment_name: MLflow experiment for the runs.
            registered_model_name: MLflow registered model that receives the @champion alias.
            s3_secret: Kubernetes Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (cluster only).
            mlflow_secret: Kubernetes Secret with MLFLOW_TRACKING_USERNAME/PASSWORD; may be absent (cluster only).
            config_map: Kubernetes ConfigMap with AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, MLFLOW_TRACKING_URI (cluster only).
            deploy: When the champion changed, serve it as a KServe InferenceService and smoke-test it (cluster only); a pipeline compiled with require_approval has no deploy task (`submit` refuses deploy=true): deployment follows `skin-cancer approve --deploy`.
            serving_namespace: Namespace of the InferenceService; empty (the default) means the pipeline's own namespace, the only one the shipped Role, Secrets and Istio policy cover (`submit` refuses another).
            inference_service_name: Name of the InferenceService (a DNS label).
            serving_service_account: ServiceAccount of the served model; its S3 Secret lets KServe fetch the model.
            submitted_by: Who submitted the run (`submit` and `schedule create` fill it in); recorded in the approval evidence, and an approver who submitted the run is refused when SKIN_CANCER_FOUR_EYES=1.
        """
        env = dict(s3_secret=s3_secret, mlflow_secret=mlflow_secret, config_map=config_map)
        # Never cached: listing keys and ETags is how a recurring run notices new images.
        fp = fingerprint_data(data_uri=data_uri).set_display_name("Fingerprint raw data")
        fp.set_caching_options(False).set_cpu_request("500m").set_memory_request("1G")
        on_cluster(fp, s.retries, s, **env)
        pre = (
            preprocess(
                data_uri=data_uri,
                image_size=image_size,
                val_fraction=val_fraction,
                seed=seed,
                max_bad_fraction=max_bad_fraction,
                mlflow_tracking_uri=mlflow_tracking_uri,
                experiment_name=experiment_name,
                data_fingerprint=fp.outputs["fingerprint"],
                allow_leakage=allow_leakage,
            )
            .set_display_name("Preprocess images")
            .set_cpu_request("2")
            .set_memory_request("4G")
        )
        # In the training image, not the runtime one: training's cache key holds its input artifacts'
        # ids (cacheutils/cache.go), so a preprocessing rerun retrains every model. In the runtime
        # image, every rebuild of that image would rerun preprocessing (its image is in its own key)
        # and so retrain everything; here a runtime-only rebuild reuses both from KFP's cache. The
        # price: the CPU node that preprocesses pulls the training image.
        on_cluster(pre, s.retries, s, image=s.train_image, **env)
        with dsl.ParallelFor(models, parallelism=s.parallelism, name="train-models") as model_config:
            trained = train(
                model_config=model_config,
                train_data=pre.outputs["train_data"],
                val_data=pre.outputs["val_data"],
                test_data=pre.outputs["test_data"],
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                refer_coverage=refer_coverage,
                image_size=image_size,
                seed=seed,
                mlflow_tracking_uri=mlflow_tracking_uri,
                experiment_name=experiment_name,
                data_fingerprint=pre.outputs["fingerprint"],
                # Its own image only: KFP's cache key holds the task's image already, and the runtime
                # image here would retrain every model when only that image is rebuilt.
                train_image=s.train_image,
            ).set_display_name("Train model")
            trained.set_cpu_request(s.train_cpu).set_memory_request(s.train_memory)
            trained.set_accelerator_type(s.accelerator_type).set_accelerator_limit(s.gpus_per_model)
            on_gpu_nodes(trained, s.node_selector, s.tolerations)
            on_cluster(trained, 0, s, image=s.train_image, **env)
        select = select_and_propose if s.require_approval else select_and_register
        chosen = (
            select(
                results=dsl.Collected(trained.outputs["Output"]),
                val_data=pre.outputs["val_data"],
                test_data=pre.outputs["test_data"],
                mlflow_tracking_uri=mlflow_tracking_uri,
                experiment_name=experiment_name,
                registered_model_name=registered_model_name,
                data_fingerprint=pre.outputs["fingerprint"],
                runtime_image=s.image,
                submitted_by=submitted_by,
                # Resolved by the driver to the run's display name (driver/resolve.go, KFP >= 2.14).
                kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            )
            .set_display_name(
                "Select and propose for approval" if s.require_approval else "Select and register champion"
            )
            .set_cpu_request("2")
            .set_memory_request("4G")
        )
        # Never cached: what it decides (the new version, champion_changed, hence a deploy) depends on
        # the registry's state, which is not among its inputs; a cache hit would replay an old
        # decision and deploy an old champion. It registers each trained run once (register_once).
        chosen.set_caching_options(False)
        on_cluster(chosen, s.retries, s, **env)
        if s.require_approval:
            return chosen.outputs["summary_json"]  # deployment follows a person's approval
        # Serving: only a new champion is deployed, and only when asked (never under kfp.local).
        with dsl.If(chosen.outputs["champion_changed"] == True, name="champion-changed"):  # noqa: E712
            with dsl.If(deploy == True, name="deploy-enabled"):  # noqa: E712
                deploy_and_check(
                    chosen.outputs,
                    data_uri,
                    inference_service_name,
                    serving_namespace,
                    serving_service_account,
                    s,
                    env,
                )
        return chosen.outputs["summary_json"]

    return skin_cancer_pipeline
