"""What every task of the pipelines gets on a cluster: its image, retries, and the Secrets,
ConfigMap and run id it reads from Kubernetes (kfp-kubernetes); GPU-node placement; and the
deploy-then-smoke-test tasks the training and deploy pipelines share.

Shared by ``training_pipeline.py``, ``scoring_pipeline.py`` and ``deploy_pipeline.py``; kfp.local
ignores the Kubernetes parts.
"""

from components.core import settings

# What the tasks read from Kubernetes (manifests/base): the names are run-time pipeline
# parameters (kfp-kubernetes accepts a parameter for the Secret/ConfigMap name), the keys are
# fixed here. No value ever enters the compiled YAML. kfp.local ignores all of it.
S3_SECRET = settings.S3_SECRET
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
MLFLOW_SECRET = settings.MLFLOW_SECRET
MLFLOW_SECRET_KEYS = {
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}
CONFIG_MAP = settings.CONFIG_MAP
CONFIG_MAP_KEYS = {
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION",
    "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
}

# The KFP run id reaches the tasks as an environment variable read from the pod's
# `pipeline/runid` label (set by KFP's API server on every pod of a run), never as a task
# input: an input is part of KFP's cache key, and a per-run value there would make every
# training a cache miss. Tasks record it as an MLflow tag (components/core/registry/tracking.py).
RUN_ID_FIELD_PATH = "metadata.labels['pipeline/runid']"


def on_cluster(task, retries: int, s, s3_secret, mlflow_secret, config_map, image: str = "") -> None:
    """The task's image, retries with backoff, and credentials and settings from Kubernetes (never values).
    ``s``: the pipeline's compile settings (its ``image`` and ``retry_backoff``)."""
    from kfp import kubernetes

    task.set_container_image(image or s.image)
    if retries:
        task.set_retry(
            num_retries=retries, backoff_duration=s.retry_backoff, backoff_factor=2.0, backoff_max_duration="3600s"
        )
    kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_KEYS)
    # Optional: an MLflow server without authentication needs no Secret.
    kubernetes.use_secret_as_env(task, secret_name=mlflow_secret, secret_key_to_env=MLFLOW_SECRET_KEYS, optional=True)
    kubernetes.use_config_map_as_env(task, config_map_name=config_map, config_map_key_to_env=CONFIG_MAP_KEYS)
    kubernetes.use_field_path_as_env(task, env_name="KFP_RUN_ID", field_path=RUN_ID_FIELD_PATH)


def on_gpu_nodes(task, node_selector: dict[str, str], tolerations: list[dict]) -> None:
    """Node selector and tolerations for GPU nodes (kfp-kubernetes), when configured."""
    if not (node_selector or tolerations):
        return
    from kfp import kubernetes

    for key, value in node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for t in tolerations:
        kubernetes.add_toleration(
            task, key=t.get("key"), operator=t.get("operator", "Equal"), value=t.get("value"), effect=t.get("effect")
        )


def deploy_and_check(model, data_uri, service_name, namespace, service_account, s, env: dict):
    """Serve ``model`` (a task's outputs: model_artifact_uri, model_name, model_version) as a KServe
    InferenceService, then smoke-test it with a few of ``data_uri``'s test images. Returns the deploy task."""
    from components.deploy import deploy_model
    from components.smoke_test import smoke_test

    served = (
        deploy_model(
            model_artifact_uri=model["model_artifact_uri"],
            model_name=model["model_name"],
            model_version=model["model_version"],
            service_name=service_name,
            namespace=namespace,
            image=s.image,
            service_account=service_account,
        )
        .set_display_name("Deploy champion (KServe)")
        .set_cpu_request("250m")
        .set_memory_request("512M")
    )
    served.set_caching_options(False).set_container_image(s.image)
    # No task retry: a retry would re-apply the same spec and fail the same way; the step
    # retries Kubernetes API blips itself and fails fast on failures that will not heal.
    checked = (
        smoke_test(url=served.outputs["internal_url"], model_name=model["model_name"], data_uri=data_uri)
        .set_display_name("Smoke-test the served model")
        .set_cpu_request("250m")
        .set_memory_request("512M")
    )
    checked.set_caching_options(False)
    on_cluster(checked, min(1, s.retries), s, **env)  # reads test images from S3
    return served
