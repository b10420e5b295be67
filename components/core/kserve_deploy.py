"""Deploy the champion as a KServe ``InferenceService`` (serving.kserve.io/v1beta1).

What runs: a *custom predictor*, the project's own image with ``skin-cancer serve`` in the
container KServe calls ``kserve-container``, on port 8080 (KServe's default for custom
containers), speaking the Open Inference Protocol (V2) plus ``/predict`` and the page at ``/``.

Where the model comes from: the container's ``STORAGE_URI`` environment variable holds the
champion's Model artifact (``s3://.../model`` holding ``model.keras`` and ``model.json``).
For a custom container KServe reads that variable the way it reads ``storageUri`` for its
built-in runtimes: its storage initializer (an init container) copies the prefix to
``/mnt/models`` before the server starts, with the S3 credentials of the predictor's
ServiceAccount (``skin-cancer-serving`` in manifests/base/rbac.yaml: a Secret with
``serving.kserve.io/s3-*`` annotations). The server then loads ``/mnt/models`` once.

How it is applied: server-side apply (``PATCH`` with ``application/apply-patch+yaml``, a fixed
field manager, ``force=true``), so a rerun with the same champion changes nothing and a new
champion rolls out a new revision. Then the status is polled until the ``Ready`` condition of
the current generation is ``True``, or the timeout passes.

RBAC the deploy step needs in the serving namespace: ``serving.kserve.io``
``inferenceservices``: ``get``, ``create``, ``patch`` (apply creates when the object is missing).
"""

import json
import logging
import re
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
FIELD_MANAGER = "skin-cancer-pipeline"
CONTAINER_NAME = "kserve-container"  # the name KServe gives (and looks for in) the predictor container
MODEL_MOUNT = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI
PORT = 8080
DEFAULT_SERVICE_ACCOUNT = "skin-cancer-serving"
_SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# KServe turns the name into Knative services and DNS labels: a DNS-1035 label, kept short.
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 45


class DeployError(RuntimeError):
    """The InferenceService could not be applied or did not become Ready."""


@dataclass
class Deployment:
    name: str
    namespace: str
    url: str
    internal_url: str
    generation: int


def storage_uri(artifact_uri: str) -> str:
    """The Model artifact URI as KServe's storage initializer reads it (KFP's ``minio://`` is S3)."""
    if artifact_uri.startswith("minio://"):
        return "s3://" + artifact_uri[len("minio://"):]
    if not artifact_uri.startswith(("s3://", "gs://", "pvc://", "https://", "http://")):
        raise DeployError(f"model artifact {artifact_uri!r} is not in object storage; KServe cannot fetch it "
                          "(run the pipeline with an S3 pipeline root)")
    return artifact_uri


def build_inference_service(
    name: str,
    namespace: str,
    image: str,
    model_artifact_uri: str,
    model_name: str,
    model_version: str,
    service_account: str = DEFAULT_SERVICE_ACCOUNT,
    min_replicas: int = 1,
    max_replicas: int = 3,
    cpu: str = "1",
    memory: str = "2Gi",
) -> dict:
    """The InferenceService manifest as a dict (what is applied, and what the tests validate)."""
    if not _NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH:
        raise DeployError(f"InferenceService name {name!r} must be a DNS-1035 label of at most "
                          f"{MAX_NAME_LENGTH} characters (lower-case letters, digits, '-', starting with a letter)")
    if not image:
        raise DeployError("no container image for the InferenceService")
    probe = {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 10, "failureThreshold": 3}
    labels = {"app.kubernetes.io/name": "skin-cancer", "app.kubernetes.io/component": "serving",
              "app.kubernetes.io/part-of": "skin-cancer-kfp"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"skin-cancer-kfp/model": f"{model_name}:{model_version}",
                            "skin-cancer-kfp/model-artifact": model_artifact_uri},
        },
        "spec": {
            "predictor": {
                "serviceAccountName": service_account,
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "containers": [
                    {
                        "name": CONTAINER_NAME,
                        "image": image,
                        "command": ["skin-cancer"],
                        "args": ["serve", "--model-uri", MODEL_MOUNT, "--host", "0.0.0.0", "--port", str(PORT),
                                 "--model-name", model_name, "--model-version", str(model_version)],
                        "env": [{"name": "STORAGE_URI", "value": storage_uri(model_artifact_uri)}],
                        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                        "readinessProbe": probe,
                        "resources": {"requests": {"cpu": cpu, "memory": memory},
                                      "limits": {"memory": memory}},
                    }
                ],
            }
        },
    }


def current_namespace(default: str = "default") -> str:
    """The namespace this pod runs in (the pipeline's namespace), else ``default``."""
    try:
        with open(_SA_NAMESPACE_FILE) as fh:
            return fh.read().strip() or default
    except OSError:
        return default


def kube_api_client():
    """A Kubernetes ApiClient: in-cluster (the pod's ServiceAccount), else ~/.kube/config."""
    from kubernetes import client, config

    import os

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # KUBECONFIG is read now, not when the kubernetes package was imported.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return client.ApiClient()


def _path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def _call(api, method: str, path: str, **kwargs) -> dict:
    from kubernetes.client.exceptions import ApiException

    try:
        return api.call_api(path, method, auth_settings=["BearerToken"], response_type="object",
                            _return_http_data_only=True, _preload_content=True, **kwargs)
    except ApiException as err:
        hint = ""
        if err.status == 403:
            hint = (" (RBAC: the pipeline's ServiceAccount needs get, create and patch on "
                    "inferenceservices.serving.kserve.io in this namespace)")
        elif err.status == 404 and method == "PATCH":
            hint = " (is KServe installed? the InferenceService CRD was not found)"
        raise DeployError(f"{method} {path}: HTTP {err.status} {err.reason}{hint}: {_message(err.body)}") from None


def _message(body) -> str:
    try:
        return json.loads(body).get("message", "")[:500]
    except Exception:
        return str(body or "")[:500]


def apply(api, manifest: dict) -> dict:
    """Server-side apply ``manifest``; returns the object as the API server stored it."""
    meta = manifest["metadata"]
    return _call(api, "PATCH", _path(meta["namespace"], meta["name"]),
                 query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                 header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
                 body=manifest)


def ready_condition(obj: dict) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond
    return None


def wait_ready(api, namespace: str, name: str, generation: int, timeout_s: float, poll_s: float = 5.0) -> dict:
    """Poll until the status has caught up with ``generation`` and Ready is True."""
    deadline = time.monotonic() + timeout_s
    last = "no status yet"
    while True:
        obj = _call(api, "GET", _path(namespace, name), header_params={"Accept": "application/json"})
        status = obj.get("status") or {}
        cond = ready_condition(obj)
        observed = status.get("observedGeneration")
        current = observed is None or observed >= generation
        if cond is not None:
            last = f"Ready={cond.get('status')} reason={cond.get('reason', '')} {cond.get('message', '')}".strip()
        if current and cond is not None and cond.get("status") == "True":
            return obj
        if time.monotonic() >= deadline:
            others = [f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
                      for c in status.get("conditions") or [] if c.get("status") != "True"]
            raise DeployError(f"InferenceService {namespace}/{name} not Ready after {timeout_s:.0f} s "
                              f"(generation {generation}, observed {observed}): {last}"
                              + (f"; not ready: {'; '.join(others)}" if others else ""))
        log.info("waiting for %s/%s: %s", namespace, name, last)
        time.sleep(poll_s)


def deploy(manifest: dict, timeout_s: float = 900, poll_s: float = 5.0, api=None) -> Deployment:
    """Apply and wait: the whole deploy step."""
    api = api or kube_api_client()
    meta = manifest["metadata"]
    stored = apply(api, manifest)
    generation = int((stored.get("metadata") or {}).get("generation") or 1)
    log.info("applied %s/%s (generation %d); waiting up to %.0f s for Ready",
             meta["namespace"], meta["name"], generation, timeout_s)
    obj = wait_ready(api, meta["namespace"], meta["name"], generation, timeout_s, poll_s)
    status = obj.get("status") or {}
    url = status.get("url") or ""
    internal = ((status.get("address") or {}).get("url")) or url
    return Deployment(meta["name"], meta["namespace"], url, internal, generation)
