"""Stage 4: serve the new champion as a KServe InferenceService (server-side apply, then wait for Ready).

Runs only when the champion changed and the pipeline parameter ``deploy`` is true. The plain
code (manifest, apply, polling) is components/core/deploy/inference_service.py.
"""

from typing import NamedTuple

from kfp import dsl

from components.core.settings import default_images


# The image is set per task by build_pipeline (CompileSettings.image); this is its default.
@dsl.component(base_image=default_images()[0], install_kfp_package=False)
def deploy_model(
    model_artifact_uri: str,
    model_name: str,
    model_version: str,
    service_name: str,
    namespace: str,
    image: str,
    service_account: str,
    timeout_seconds: int = 900,
    failure_grace_seconds: int = 120,
) -> NamedTuple("Deployment", url=str, internal_url=str, manifest=str):
    """Create or update InferenceService ``service_name`` running ``image`` with ``skin-cancer serve``
    on the champion's Model artifact; wait until Ready and return its URLs.

    ``namespace`` empty means the namespace the pipeline runs in. ``url`` is the external URL,
    ``internal_url`` the cluster-local one (what the smoke test calls).
    """
    import json
    import logging
    from collections import namedtuple

    from components.core.deploy import inference_service

    logging.basicConfig(level=logging.INFO)
    manifest = inference_service.build_inference_service(
        name=service_name,
        namespace=namespace or inference_service.current_namespace(),
        image=image,
        model_artifact_uri=model_artifact_uri,
        model_name=model_name,
        model_version=model_version,
        service_account=service_account,
    )
    print(json.dumps(manifest, indent=1))
    result = inference_service.deploy(manifest, timeout_s=timeout_seconds, failure_grace_s=failure_grace_seconds)
    print(f"InferenceService {result.namespace}/{result.name} Ready: {result.url} (in cluster: {result.internal_url})")
    return namedtuple("Deployment", ["url", "internal_url", "manifest"])(
        result.url, result.internal_url, json.dumps(manifest)
    )
