"""The deploy pipeline's first step: which version is @champion, and may it be served.

Deployment follows approval: a champion is served only when a person approved it (or when a
pipeline compiled without require_approval promoted it, which that pipeline records). The plain
code is components/core/registry/approval.py (``deployable``)."""

from typing import NamedTuple

from kfp import dsl

from components.core.settings import default_images


@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def approved_champion(registered_model_name: str, mlflow_tracking_uri: str) -> NamedTuple(
    "Champion", model_name=str, model_version=str, model_artifact_uri=str
):
    """The @champion of ``registered_model_name`` and its Model artifact (model.keras + model.json);
    fails, naming the version and its approval status, when it was not approved."""
    import logging
    from collections import namedtuple

    from mlflow import MlflowClient

    from components.core.registry import approval, tracking

    logging.basicConfig(level=logging.INFO)
    tracking.setup(mlflow_tracking_uri)
    version, artifact = approval.deployable(MlflowClient(), registered_model_name)
    print(f"deploying {registered_model_name} version {version} from {artifact}")
    return namedtuple("Champion", ["model_name", "model_version", "model_artifact_uri"])(
        registered_model_name, version, artifact
    )
