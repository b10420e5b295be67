"""The deploy pipeline: serve the approved @champion as a KServe InferenceService and smoke-test it.

Deployment follows approval: a training pipeline compiled with require_approval has no deploy
task, and this pipeline deploys only a champion a person approved (components/champion.py).
``skin-cancer approve --deploy`` submits it; ``skin-cancer submit --pipeline deploy`` too.
"""

from dataclasses import dataclass, field

from kfp import dsl

from components.champion import approved_champion
from components.core import settings
from pipelines.tasks import CONFIG_MAP, MLFLOW_SECRET, S3_SECRET, deploy_and_check, on_cluster

PIPELINE_NAME = settings.DEPLOY_PIPELINE_NAME


@dataclass
class DeploySettings:
    """What KFP fixes when the deploy pipeline is compiled."""

    image: str = field(default_factory=lambda: settings.default_images()[0])
    retries: int = 3  # the champion lookup and the smoke test touch MLflow and S3
    retry_backoff: str = "30s"


def build_deploy_pipeline(compile_settings: "DeploySettings | None" = None):
    s = compile_settings or DeploySettings()

    @dsl.pipeline(name=PIPELINE_NAME, description="Serve the approved @champion with KServe and smoke-test it.")
    def skin_cancer_deploy(
        data_uri: str,
        mlflow_tracking_uri: str = "",
        registered_model_name: str = settings.REGISTERED_MODEL_NAME,
        s3_secret: str = S3_SECRET,
        mlflow_secret: str = MLFLOW_SECRET,
        config_map: str = CONFIG_MAP,
        serving_namespace: str = "",
        inference_service_name: str = "skin-cancer",
        serving_service_account: str = settings.SERVING_SERVICE_ACCOUNT,
    ) -> str:
        """Deploy the approved champion.

        Args:
            data_uri: Raw images (s3://bucket/prefix); the smoke test sends a few of its test images.
            mlflow_tracking_uri: MLflow tracking server; empty uses MLFLOW_TRACKING_URI from the ConfigMap.
            registered_model_name: MLflow registered model whose @champion is served.
            s3_secret: Kubernetes Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
            mlflow_secret: Kubernetes Secret with MLFLOW_TRACKING_USERNAME/PASSWORD; may be absent.
            config_map: Kubernetes ConfigMap with AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, MLFLOW_TRACKING_URI.
            serving_namespace: Namespace of the InferenceService; empty means the pipeline's own.
            inference_service_name: Name of the InferenceService (a DNS label).
            serving_service_account: ServiceAccount of the served model; its S3 Secret lets KServe fetch the model.
        """
        env = dict(s3_secret=s3_secret, mlflow_secret=mlflow_secret, config_map=config_map)
        champion = approved_champion(
            registered_model_name=registered_model_name, mlflow_tracking_uri=mlflow_tracking_uri
        ).set_display_name("Find the approved champion")
        # Never cached: which version is champion is the registry's state, not an input.
        champion.set_caching_options(False).set_cpu_request("250m").set_memory_request("512M")
        on_cluster(champion, s.retries, s, **env)
        served = deploy_and_check(
            champion.outputs,
            data_uri,
            inference_service_name,
            serving_namespace,
            serving_service_account,
            s,
            env,
        )
        return served.outputs["url"]

    return skin_cancer_deploy
