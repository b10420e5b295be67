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
So the artifact must lie in the project's bucket: the manifests set KFP's pipeline root there
(ConfigMap ``kfp-launcher``). An artifact in KFP's own store (``minio://mlpipeline/...``, KFP's
default pipeline root) is refused before anything is applied: KServe cannot read it with
those credentials, and rewriting its scheme would only name a bucket that is not there.

How it is applied: server-side apply (``PATCH`` with ``application/apply-patch+yaml``, a fixed
field manager, ``force=true``), so a rerun with the same champion changes nothing and a new
champion rolls out a new revision. Then the status is polled until the ``Ready`` condition of
the current generation is ``True``, or the timeout passes.

Failing fast: KServe says in the status when waiting is pointless (``status.modelStatus`` and
the conditions, pkg/apis/serving/v1beta1/inference_service_status.go). A spec KServe refused
(``transitionStatus: InvalidSpec``) fails within ``SPEC_REFUSED_CONFIRM_S``; a failed model
load (``BlockedByFailedLoad``: the storage initializer or ``kserve-container`` exited with an
error or is in CrashLoopBackOff), a failed revision (``Ready=False`` with reason
``RevisionFailed``: an image that cannot be pulled, a container that keeps exiting) or a rollout
past its progress deadline fails once it has lasted ``failure_grace_s`` (default 120 s: a
registry or S3 blip heals within that). Each raises :class:`InferenceServiceFailed`, naming the
InferenceService, KServe's reason and message and what to check; rerunning the step would meet
the same failure, so the deploy task is not worth retrying. Transient API errors (HTTP 429/5xx,
a reset connection) are retried inside the step instead.

RBAC the deploy step needs in the serving namespace: ``serving.kserve.io``
``inferenceservices``: ``get``, ``create``, ``patch`` (apply creates when the object is missing).
"""

import json
import logging
import re
import time
from dataclasses import dataclass

from components.core import settings

log = logging.getLogger(__name__)

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
FIELD_MANAGER = "skin-cancer-pipeline"
CONTAINER_NAME = "kserve-container"  # the name KServe gives (and looks for in) the predictor container
MODEL_MOUNT = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI
PORT = 8080
GRPC_PORT = 8081  # KServe's default gRPC port
S3_SECRET = settings.S3_SECRET  # the S3 credentials the serving account lists (manifests/base/rbac.yaml)
KFP_BUCKET = "mlpipeline"  # Kubeflow Pipelines' own MinIO bucket
KFP_DEFAULT_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"  # KFP's pipeline root when kfp-launcher sets none
# Labels of the InferenceService; KServe copies them onto the predictor's pods (next to its own
# `component: predictor`), where manifests/base/serving-access.yaml selects them.
LABELS = {
    "app.kubernetes.io/name": "skin-cancer",
    "app.kubernetes.io/component": "serving",
    "app.kubernetes.io/part-of": "skin-cancer-kfp",
}
DEFAULT_FAILURE_GRACE_S = 120.0  # how long a failure that may still clear is given before the step fails
SPEC_REFUSED_CONFIRM_S = 10.0  # how long a refused spec must stay refused (a refusal of the previous spec clears)
_SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# KServe turns the name into Knative services and DNS labels: a DNS-1035 label, kept short.
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 45


class DeployError(RuntimeError):
    """The InferenceService could not be applied or did not become Ready."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient  # the API server was briefly unavailable: the call may be repeated


class InferenceServiceFailed(DeployError):
    """KServe reports a failure that waiting will not heal (not retryable): the message names
    the InferenceService, KServe's reason and what to check."""


@dataclass
class Deployment:
    name: str
    namespace: str
    url: str
    internal_url: str
    generation: int


def storage_uri(artifact_uri: str) -> str:
    """The Model artifact URI for KServe's storage initializer: an ``s3://`` URI outside Kubeflow
    Pipelines' own bucket, i.e. one the serving account's S3 credentials can read. Anything else
    is refused with what to configure (never rewritten)."""
    scheme, sep, rest = artifact_uri.partition("://")
    bucket = rest.split("/", 1)[0] if sep else ""
    if scheme == "minio" or (scheme == "s3" and bucket == KFP_BUCKET):
        raise DeployError(
            f"model artifact {artifact_uri} is in Kubeflow Pipelines' own object store (bucket {KFP_BUCKET!r}, "
            f"KFP's default pipeline root {KFP_DEFAULT_PIPELINE_ROOT}); KServe fetches the model with the S3 "
            f"credentials of the serving account (Secret {S3_SECRET}), which cannot read that bucket. Put the "
            "pipeline root in your bucket: apply the manifests (ConfigMap kfp-launcher, defaultPipelineRoot "
            "s3://skin-cancer/pipeline-root; manifests/README.md), then submit again with --no-cache so that "
            "training writes a new model there"
        )
    if scheme != "s3" or not bucket:
        raise DeployError(
            f"model artifact {artifact_uri!r} is not an s3:// URI; KServe fetches the model with the serving "
            f"account's S3 credentials (Secret {S3_SECRET}), so the pipeline root must be in S3 (ConfigMap "
            "kfp-launcher; manifests/README.md)"
        )
    return artifact_uri


def build_inference_service(
    name: str,
    namespace: str,
    image: str,
    model_artifact_uri: str,
    model_name: str,
    model_version: str,
    service_account: str = settings.SERVING_SERVICE_ACCOUNT,
    min_replicas: int = 1,
    max_replicas: int = 3,
    cpu: str = "1",
    memory: str = "2Gi",
) -> dict:
    """The InferenceService manifest as a dict (what is applied, and what the tests validate)."""
    if not _NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH:
        raise DeployError(
            f"InferenceService name {name!r} must be a DNS-1035 label of at most "
            f"{MAX_NAME_LENGTH} characters (lower-case letters, digits, '-', starting with a letter)"
        )
    if not image:
        raise DeployError("no container image for the InferenceService")
    probe = {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 10, "failureThreshold": 3}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(LABELS),
            "annotations": {
                "skin-cancer-kfp/model": f"{model_name}:{model_version}",
                "skin-cancer-kfp/model-artifact": model_artifact_uri,
                # KServe adds the scrape annotations for the server's /metrics on PORT
                # (and, serverless, merges them with the queue proxy's)
                "serving.kserve.io/enable-prometheus-scraping": "true",
            },
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
                        # The same server as `skin-cancer serve`; its gRPC port stays inside the pod
                        # (a KServe predictor exposes one port: HTTP here, or h2c for gRPC alone).
                        "args": [
                            "serve",
                            "--model-uri",
                            MODEL_MOUNT,
                            "--host",
                            "0.0.0.0",
                            "--port",
                            str(PORT),
                            "--grpc-port",
                            str(GRPC_PORT),
                            "--model-name",
                            model_name,
                            "--model-version",
                            str(model_version),
                        ],
                        "env": [{"name": "STORAGE_URI", "value": storage_uri(model_artifact_uri)}],
                        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                        "readinessProbe": probe,
                        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
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

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # KUBECONFIG is read now, not when the kubernetes package was imported.
        config.load_kube_config(config_file=settings.env("KUBECONFIG") or None)
    return client.ApiClient()


def _path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def _call(api, method: str, path: str, **kwargs) -> dict:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return api.call_api(
            path,
            method,
            auth_settings=["BearerToken"],
            response_type="object",
            _return_http_data_only=True,
            _preload_content=True,
            **kwargs,
        )
    except ApiException as err:
        hint = ""
        if err.status == 403:
            hint = (
                " (RBAC: the pipeline's ServiceAccount needs get, create and patch on "
                "inferenceservices.serving.kserve.io in this namespace)"
            )
        elif err.status == 404 and method == "PATCH":
            hint = " (is KServe installed? the InferenceService CRD was not found)"
        transient = err.status == 429 or (err.status or 0) >= 500
        raise DeployError(
            f"{method} {path}: HTTP {err.status} {err.reason}{hint}: {_message(err.body)}", transient=transient
        ) from None
    except (HTTPError, OSError) as err:  # connection refused or reset, timeouts: the API server is briefly away
        raise DeployError(f"{method} {path}: {type(err).__name__}: {err}", transient=True) from None


def _message(body) -> str:
    try:
        return json.loads(body).get("message", "")[:500]
    except Exception:
        return str(body or "")[:500]


def apply(api, manifest: dict, attempts: int = 4, delay_s: float = 2.0) -> dict:
    """Server-side apply ``manifest``; returns the object as the API server stored it. Apply is
    idempotent, so an API server that is briefly away (HTTP 429/5xx, a reset) is asked again."""
    meta = manifest["metadata"]
    for attempt in range(1, attempts + 1):
        try:
            return _call(
                api,
                "PATCH",
                _path(meta["namespace"], meta["name"]),
                query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
                body=manifest,
            )
        except DeployError as err:
            if not err.transient or attempt == attempts:
                raise
            log.warning("%s; trying again in %.0f s", err, delay_s)
            time.sleep(delay_s)
            delay_s *= 2
    raise AssertionError("unreachable")


def ready_condition(obj: dict) -> dict | None:
    return _condition(obj.get("status") or {}, "Ready")


def _condition(status: dict, kind: str) -> dict | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


# Ready=False reasons after which KServe, Knative or the Deployment controller have stopped trying:
# a failed revision (Knative: image not resolvable, container exiting, initial scale never
# reached) or a rollout past its progress deadline, or pods that cannot be created (raw mode).
FAILED_REASONS = {"RevisionFailed", "ProgressDeadlineExceeded", "FailedCreate"}
# Kubelet states in a condition's message that a container will not start as it is.
FAILED_MESSAGES = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "Unable to fetch image",
)

_LOAD_HINT = (
    "the storage initializer could not copy STORAGE_URI to /mnt/models (the serving account's S3 Secret "
    f"{S3_SECRET} and its serving.kserve.io/s3-* annotations must reach the model's bucket), or "
    "`skin-cancer serve` exited while loading it"
)
_HINTS = {
    "InvalidSpec": "KServe refused the predictor spec; fix it (image, container, runtime) and deploy again",
    "BlockedByFailedLoad": _LOAD_HINT,
    "RevisionFailed": (
        "the predictor's revision failed: an image that cannot be pulled (reference, registry "
        "credentials) or a container that keeps exiting"
    ),
    "ProgressDeadlineExceeded": "no predictor pod became ready before the rollout's progress deadline",
    "FailedCreate": "the predictor's pods cannot be created (quota, admission policy)",
}


@dataclass
class Failure:
    reason: str  # KServe's (or Knative's, or the Deployment controller's) reason
    detail: str  # where it was read, and the message
    spec_refused: bool  # KServe refused the spec itself: only a new spec changes that
    hint: str  # what to check


def failure(status: dict) -> Failure | None:
    """What KServe's status says is broken beyond waiting, or None.

    A refused spec (``modelStatus.transitionStatus: InvalidSpec``, except ``RuntimeNotRecognized``,
    which KServe itself says may still come) is final. A failed load (``BlockedByFailedLoad``), a
    failed revision or an exceeded progress deadline may still clear (a registry or S3 blip, a pod
    restarting) and is judged by how long it lasts. The detail joins what the model status and
    the failed condition say (a failed revision leaves ``lastFailureInfo`` empty, a failed storage
    initializer leaves the conditions Unknown)."""
    model = status.get("modelStatus") or {}
    info = model.get("lastFailureInfo") or {}
    transition = model.get("transitionStatus")
    failed_load = transition in ("InvalidSpec", "BlockedByFailedLoad")
    cond = next(
        (
            c
            for c in (_condition(status, kind) for kind in ("Ready", "PredictorReady"))
            if c is not None
            and c.get("status") == "False"
            and (c.get("reason") in FAILED_REASONS or any(m in (c.get("message") or "") for m in FAILED_MESSAGES))
        ),
        None,
    )
    if not failed_load and cond is None:
        return None
    parts = []
    if failed_load:
        parts += [
            f"modelStatus.transitionStatus={transition}",
            (info.get("message") or "").strip(),
            f"exit code {info['exitCode']}" if info.get("exitCode") else "",
            f"at {info['location']}" if info.get("location") else "",
        ]
    if cond is not None:
        parts.append(f"{cond['type']}=False ({cond.get('reason', '')}): {(cond.get('message') or '').strip()}")
    reason = (
        info.get("reason")
        if failed_load and info.get("reason")
        else (cond.get("reason") if cond is not None and cond.get("reason") else transition)
    )
    if transition == "InvalidSpec":
        hint = _HINTS["InvalidSpec"]
    elif failed_load and info:
        hint = _HINTS["BlockedByFailedLoad"]
    else:
        hint = _HINTS.get(cond.get("reason") if cond is not None else "", _HINTS["RevisionFailed"])
    return Failure(
        reason, "; ".join(p for p in parts if p), transition == "InvalidSpec" and reason != "RuntimeNotRecognized", hint
    )


def wait_ready(
    api,
    namespace: str,
    name: str,
    generation: int,
    timeout_s: float,
    poll_s: float = 5.0,
    failure_grace_s: float = DEFAULT_FAILURE_GRACE_S,
) -> dict:
    """Poll until the status has caught up with ``generation`` and Ready is True.

    Raises :class:`InferenceServiceFailed` once the status has shown a failure that will not heal
    (see :func:`failure`) for ``failure_grace_s`` on end, or for ``SPEC_REFUSED_CONFIRM_S`` when
    KServe refused the spec (a refusal is judged whatever ``observedGeneration`` says: KServe takes
    that from the Knative Service or Deployment, which a refused spec never reaches; the short
    wait lets a refusal of an older spec be replaced); :class:`DeployError` after ``timeout_s``.
    Transient API errors (HTTP 429/5xx, connection resets) are ridden out until the timeout."""
    deadline = time.monotonic() + timeout_s
    last = "no status yet"
    failing_since: float | None = None
    while True:
        try:
            obj = _call(api, "GET", _path(namespace, name), header_params={"Accept": "application/json"})
        except DeployError as err:
            if not err.transient or time.monotonic() >= deadline:
                raise
            log.warning("reading %s/%s: %s; polling on", namespace, name, err)
            time.sleep(poll_s)
            continue
        status = obj.get("status") or {}
        cond = ready_condition(obj)
        observed = status.get("observedGeneration")
        current = observed is None or observed >= generation
        if cond is not None:
            last = f"Ready={cond.get('status')} reason={cond.get('reason', '')} {cond.get('message', '')}".strip()
        if current and cond is not None and cond.get("status") == "True":
            return obj
        broken = failure(status)
        if broken is not None and not (current or broken.spec_refused):
            broken = None  # the pods of an older generation say nothing about this one
        now = time.monotonic()
        if broken is None:
            failing_since = None
        elif failing_since is None:
            failing_since = now
        grace = min(failure_grace_s, SPEC_REFUSED_CONFIRM_S) if broken and broken.spec_refused else failure_grace_s
        if broken and now - failing_since >= grace:
            raise InferenceServiceFailed(
                f"InferenceService {namespace}/{name} (generation {generation}) failed, still after "
                f"{now - failing_since:.0f} s: {broken.reason}: "
                f"{broken.detail}. Likely cause: {broken.hint}. Waiting longer or "
                f"rerunning the deploy step will not fix it; see `kubectl -n {namespace} describe inferenceservice "
                f"{name}` and `kubectl -n {namespace} logs -l serving.kserve.io/inferenceservice={name} --all-containers`"
            )
        if now >= deadline:
            others = [
                f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
                for c in status.get("conditions") or []
                if c.get("status") != "True"
            ]
            raise DeployError(
                f"InferenceService {namespace}/{name} not Ready after {timeout_s:.0f} s "
                f"(generation {generation}, observed {observed}): {last}"
                + (f"; not ready: {'; '.join(others)}" if others else "")
            )
        log.info(
            "waiting for %s/%s: %s%s",
            namespace,
            name,
            last,
            f" (failing: {broken.reason}, {now - failing_since:.0f} s)" if broken else "",
        )
        time.sleep(poll_s)


def deploy(
    manifest: dict,
    timeout_s: float = 900,
    poll_s: float = 5.0,
    api=None,
    failure_grace_s: float = DEFAULT_FAILURE_GRACE_S,
) -> Deployment:
    """Apply and wait: the whole deploy step."""
    api = api or kube_api_client()
    meta = manifest["metadata"]
    stored = apply(api, manifest)
    generation = int((stored.get("metadata") or {}).get("generation") or 1)
    log.info(
        "applied %s/%s (generation %d); waiting up to %.0f s for Ready",
        meta["namespace"],
        meta["name"],
        generation,
        timeout_s,
    )
    obj = wait_ready(api, meta["namespace"], meta["name"], generation, timeout_s, poll_s, failure_grace_s)
    status = obj.get("status") or {}
    url = status.get("url") or ""
    internal = ((status.get("address") or {}).get("url")) or url
    return Deployment(meta["name"], meta["namespace"], url, internal, generation)
