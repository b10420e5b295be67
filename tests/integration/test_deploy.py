"""The deploy step: the InferenceService it generates, checked against KServe's published
fields and the Kubernetes schemas; server-side apply and the wait for Ready, against a stub
Kubernetes API server over real HTTP (no cluster here); and the wiring into the pipeline."""

import functools
import json
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from components.core.deploy import inference_service
from components.core.deploy.inference_service import DeployError, InferenceServiceFailed
from tests.support.http_stub import JsonHandler

FIELDS = json.loads((Path(__file__).parents[1] / "data" / "kserve_v1beta1_inferenceservice.json").read_text())
# Under the pipeline root manifests/base/kfp-launcher.yaml sets: the project's bucket.
ARTIFACT = "s3://skin-cancer/pipeline-root/skin-cancer-training/run-1/train/0b1c/model"


def manifest(**overrides) -> dict:
    args = dict(
        name="skin-cancer",
        namespace="team-a",
        image="registry.example/skin-cancer:1.2.3",
        model_artifact_uri=ARTIFACT,
        model_name="skin-cancer-classifier",
        model_version="4",
    )
    return inference_service.build_inference_service(**{**args, **overrides})


# --- validation against the published fields --------------------------------------------------


@functools.lru_cache(maxsize=None)
def _k8s_schema_validator(kind: str):
    """A strict JSON-schema validator for Kubernetes type ``kind`` (the schemas kubernetes-validate ships)."""
    import jsonschema
    import kubernetes_validate
    from referencing import Registry, Resource

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    version = sorted(
        (p.name for p in root.glob("v*-local-strict")), key=lambda v: [int(x) for x in v[1:].split("-")[0].split(".")]
    )[-1]
    definitions = json.loads((root / version / "_definitions.json").read_text())
    resource = Resource.from_contents(definitions)
    registry = Registry().with_resources([("/api/_definitions.json", resource), (definitions["$id"], resource)])
    group = "io.k8s.apimachinery.pkg.apis.meta.v1" if kind == "ObjectMeta" else "io.k8s.api.core.v1"
    assert f"{group}.{kind}" in definitions["$defs"], f"{group}.{kind} not in {version}"
    schema = {"$schema": definitions["$schema"], "$ref": f"{definitions['$id']}#/$defs/{group}.{kind}"}
    return jsonschema.validators.validator_for(schema)(schema, registry=registry)


def _check_value(value, typ: str, where: str, problems: list[str]) -> None:
    if typ == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ == "str":
        ok = isinstance(value, str)
    elif typ == "bool":
        ok = isinstance(value, bool)
    elif typ == "dict(str, str)":
        ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    elif typ.startswith("list[V1") and not typ.startswith("list[V1beta1"):
        ok = isinstance(value, list)
        if ok:
            validator = _k8s_schema_validator(typ[len("list[V1") : -1])
            for i, item in enumerate(value):
                problems += [
                    f"{where}[{i}].{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(item)
                ]
    elif typ.startswith("V1") and not typ.startswith("V1beta1"):
        validator = _k8s_schema_validator(typ[2:])
        problems += [f"{where}.{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(value)]
        return
    else:
        problems.append(f"{where}: type {typ} is not checked by this test; extend it before using the field")
        return
    if not ok:
        problems.append(f"{where}: {value!r} is not {typ}")


def _check_object(obj: dict, model: str, where: str, problems: list[str]) -> None:
    spec = FIELDS[model]
    for key in spec["required"]:
        if key not in obj:
            problems.append(f"{where}.{key}: required by KServe")
    for key, value in obj.items():
        typ = spec["types"].get(key)
        if typ is None:
            problems.append(f"{where}.{key}: not a field of KServe's {model}")
        elif typ.startswith("V1beta1"):
            _check_object(value, typ, f"{where}.{key}", problems)
        else:
            _check_value(value, typ, f"{where}.{key}", problems)


def validate_inference_service(isvc: dict) -> list[str]:
    problems = []
    extra = set(isvc) - {"apiVersion", "kind", "metadata", "spec"}
    if extra:
        problems.append(f"unexpected top-level fields {sorted(extra)}")
    if isvc.get("apiVersion") != f"{FIELDS['group']}/{FIELDS['version']}" or isvc.get("kind") != FIELDS["kind"]:
        problems.append(f"apiVersion/kind {isvc.get('apiVersion')}/{isvc.get('kind')}")
    _check_value(isvc.get("metadata"), "V1ObjectMeta", "metadata", problems)
    _check_object(isvc.get("spec", {}), "V1beta1InferenceServiceSpec", "spec", problems)
    return problems


def test_inference_service_uses_only_published_fields():
    isvc = manifest()
    assert validate_inference_service(isvc) == []
    # Round trip through YAML, as `kubectl apply -f` would read it.
    import yaml

    assert validate_inference_service(yaml.safe_load(yaml.safe_dump(isvc))) == []


def test_validator_is_not_vacuous():
    bad = manifest()
    bad["spec"]["predictor"]["replicas"] = 2  # not a KServe field (minReplicas/maxReplicas are)
    bad["spec"]["predictor"]["containers"][0]["imagePullPolicy"] = 3  # wrong type for a Container field
    bad["spec"]["predictor"]["containers"][0]["port"] = 8080  # not a Container field
    del bad["spec"]["predictor"]
    bad["spec"]["predictr"] = {}
    problems = validate_inference_service(bad)
    assert any("predictr" in p for p in problems)
    assert any("spec.predictor: required" in p for p in problems)
    worse = manifest()
    worse["spec"]["predictor"]["replicas"] = 2
    worse["spec"]["predictor"]["containers"][0]["port"] = 8080
    worse["spec"]["predictor"]["containers"][0]["imagePullPolicy"] = 3
    problems = validate_inference_service(worse)
    assert any("replicas" in p for p in problems)
    assert any("port" in p for p in problems)
    assert any("imagePullPolicy" in p for p in problems)


def test_custom_predictor_runs_the_project_image_on_the_champion_artifact():
    isvc = manifest()
    custom = FIELDS["custom_container"]
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == custom["container_name"]
    assert container["image"] == "registry.example/skin-cancer:1.2.3"
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The Model artifact, as it is, is what KServe's storage initializer fetches.
    assert env[custom["storage_uri_env"]] == ARTIFACT
    cmd = container["command"] + container["args"]
    assert cmd[:2] == ["skin-cancer", "serve"]
    assert cmd[cmd.index("--model-uri") + 1] == custom["model_mount"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8080" == str(container["ports"][0]["containerPort"])
    assert cmd[cmd.index("--grpc-port") + 1] == "8081"
    assert cmd[cmd.index("--model-name") + 1] == "skin-cancer-classifier"
    assert cmd[cmd.index("--model-version") + 1] == "4"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert predictor["serviceAccountName"] == "skin-cancer-serving"
    assert isvc["metadata"]["namespace"] == "team-a"
    # KServe's switch for scraping the server's /metrics (on the container port, KServe's default path)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"


@pytest.mark.parametrize("name", ["Skin-Cancer", "1abc", "skin_cancer", "a" * 60, "skin-"])
def test_bad_names_are_refused(name):
    with pytest.raises(DeployError, match="DNS-1035"):
        manifest(name=name)


@pytest.mark.parametrize(
    "uri",
    [
        "/tmp/pipeline-root/model",
        "file:///tmp/pipeline-root/model",
        "gs://bucket/pipeline-root/model",
        "s3://",
        "https://example.com/model",
    ],
)
def test_artifacts_the_serving_account_cannot_read_are_refused(uri):
    with pytest.raises(DeployError, match=r"is not an s3:// URI.*skin-cancer-s3.*kfp-launcher"):
        manifest(model_artifact_uri=uri)


@pytest.mark.parametrize(
    "uri",
    [
        "minio://mlpipeline/v2/artifacts/skin-cancer-training/run-1/train/model",
        "s3://mlpipeline/v2/artifacts/skin-cancer-training/run-1/train/model",
    ],
)
def test_artifacts_in_kfps_own_store_are_refused_not_rewritten(uri):
    """KFP's default pipeline root is its own MinIO; KServe reads with the project's S3 credentials,
    where that bucket does not exist. The step says so, naming the URI and what to configure."""
    with pytest.raises(DeployError) as err:
        manifest(model_artifact_uri=uri)
    message = str(err.value)
    assert uri in message
    assert "Kubeflow Pipelines' own object store" in message and "skin-cancer-s3" in message
    assert "kfp-launcher" in message and "--no-cache" in message


# --- server-side apply and waiting, over HTTP -------------------------------------------------


class StubKube:
    """A minimal Kubernetes API for one InferenceService: server-side apply and GET.

    Like the real API server, apply bumps ``metadata.generation`` only when the spec changes;
    the "controller" reports Ready for a generation after ``ready_after`` GETs of it, and until
    then keeps reporting the previous generation's (stale) Ready=True status. With ``statuses``
    the controller instead reports those, one per GET of the current generation (the last one
    repeats); ``unavailable`` answers that many PATCHes, and then that many GETs, with HTTP 503."""

    def __init__(
        self, ready_after: int = 2, deny: bool = False, statuses: list[dict] | None = None, unavailable: int = 0
    ):
        self.requests: list[dict] = []
        self.obj: dict | None = None
        self.gets_since_apply = 0
        self.ready_after = ready_after
        self.deny = deny
        self.statuses = statuses
        stub = self

        self.unavailable_left = {"PATCH": unavailable, "GET": unavailable}

        def unavailable_now(handler) -> bool:
            if stub.unavailable_left[handler.command] <= 0:
                return False
            stub.unavailable_left[handler.command] -= 1
            handler.send_json(
                503,
                {
                    "kind": "Status",
                    "message": "the server is currently unable to handle the request",
                    "reason": "ServiceUnavailable",
                    "code": 503,
                },
            )
            return True

        class Handler(JsonHandler):
            def do_PATCH(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                url = urlsplit(self.path)
                stub.requests.append(
                    {
                        "method": "PATCH",
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "content_type": self.headers["Content-Type"],
                        "body": body,
                        "auth": self.headers.get("Authorization"),
                    }
                )
                if stub.deny:
                    return self.send_json(
                        403,
                        {
                            "kind": "Status",
                            "message": "inferenceservices is forbidden: User cannot patch resource",
                            "code": 403,
                        },
                    )
                if unavailable_now(self):
                    return None
                self.send_json(200, stub.apply(body))

            def do_GET(self):
                stub.requests.append({"method": "GET", "path": urlsplit(self.path).path})
                if unavailable_now(self):
                    return None
                if stub.obj is None:
                    return self.send_json(404, {"kind": "Status", "message": "not found", "code": 404})
                self.send_json(200, stub.observe())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def apply(self, body: dict) -> dict:
        if self.obj is None:
            self.obj = {**body, "metadata": {**body["metadata"], "generation": 1}, "status": {}}
        elif body["spec"] != self.obj["spec"]:
            self.obj = {
                **body,
                "metadata": {**body["metadata"], "generation": self.obj["metadata"]["generation"] + 1},
                "status": self.obj["status"],
            }
        else:
            return self.obj
        self.gets_since_apply = 0
        return self.obj

    def observe(self) -> dict:
        self.gets_since_apply += 1
        meta = self.obj["metadata"]
        if self.statuses is not None:
            self.obj["status"] = self.statuses[min(self.gets_since_apply, len(self.statuses)) - 1]
        elif self.gets_since_apply > self.ready_after:
            host = f"{meta['name']}.{meta['namespace']}"
            self.obj["status"] = {
                "observedGeneration": meta["generation"],
                "url": f"http://{host}.example.com",
                "address": {"url": f"http://{host}.svc.cluster.local"},
                "conditions": [{"type": "PredictorReady", "status": "True"}, {"type": "Ready", "status": "True"}],
            }
        elif self.obj["status"]:
            pass  # still the previous generation's status: Ready=True, but stale
        else:
            self.obj["status"] = {
                "observedGeneration": meta["generation"],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "RevisionMissing",
                        "message": "Revision skin-cancer-predictor-00001 is not ready",
                    }
                ],
            }
        return self.obj

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def kube():
    stub = StubKube()
    yield stub
    stub.close()


def api_client(url: str):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = url
    cfg.api_key = {"authorization": "test-token"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)


def test_apply_is_server_side_and_waits_for_ready(kube):
    result = inference_service.deploy(manifest(), timeout_s=30, poll_s=0.01, api=api_client(kube.url))
    patch = kube.requests[0]
    assert patch["method"] == "PATCH"
    assert patch["path"] == "/apis/serving.kserve.io/v1beta1/namespaces/team-a/inferenceservices/skin-cancer"
    assert patch["content_type"] == "application/apply-patch+yaml"
    assert patch["query"] == {"fieldManager": ["skin-cancer-pipeline"], "force": ["true"]}
    assert patch["body"] == manifest()
    assert patch["auth"] == "Bearer test-token"
    assert sum(r["method"] == "GET" for r in kube.requests) == 3  # not Ready twice, then Ready
    assert result.url == "http://skin-cancer.team-a.example.com"
    assert result.internal_url == "http://skin-cancer.team-a.svc.cluster.local"
    assert result.generation == 1


def test_rerun_is_idempotent_and_a_new_champion_waits_for_its_own_generation(kube):
    api = api_client(kube.url)
    inference_service.deploy(manifest(), timeout_s=30, poll_s=0.01, api=api)
    again = inference_service.deploy(manifest(), timeout_s=30, poll_s=0.01, api=api)
    assert again.generation == 1  # same spec: nothing changed
    kube.requests.clear()
    newer = inference_service.deploy(
        manifest(model_version="5", model_artifact_uri="s3://b/run-2/model"), timeout_s=30, poll_s=0.01, api=api
    )
    assert newer.generation == 2
    # The stale Ready=True of generation 1 was not taken for the new revision being ready.
    assert sum(r["method"] == "GET" for r in kube.requests) == 3


def test_timeout_names_the_reason():
    stub = StubKube(ready_after=10**9)
    try:
        with pytest.raises(DeployError, match="not Ready after .*RevisionMissing.*is not ready"):
            inference_service.deploy(manifest(), timeout_s=0.3, poll_s=0.05, api=api_client(stub.url))
    finally:
        stub.close()


def test_forbidden_says_which_rbac_is_missing():
    stub = StubKube(deny=True)
    try:
        with pytest.raises(DeployError, match="HTTP 403.*get, create and patch on inferenceservices"):
            inference_service.deploy(manifest(), timeout_s=5, api=api_client(stub.url))
    finally:
        stub.close()


# --- failing fast: statuses shaped as KServe writes them ----------------------------------------
# Field names and values from kserve/kserve pkg/apis/serving/v1beta1/inference_service_status.go
# (InferenceServiceStatus, ModelStatus, FailureInfo, TransitionStatus, FailureReason) and the
# predictor reconciler (pkg/controller/v1beta1/inferenceservice/components/predictor.go); the
# condition messages are Knative Serving's.

T = "2026-01-01T00:00:00Z"
REVISION_MISSING = 'Configuration "skin-cancer-predictor" is waiting for a Revision to become ready.'


def conditions(ready: str, reason: str = "", message: str = "") -> list[dict]:
    """The conditions KServe keeps in Serverless mode, PredictorReady and Ready alike."""
    ready_like = {
        "status": ready,
        "lastTransitionTime": T,
        **({"reason": reason} if reason else {}),
        **({"message": message} if message else {}),
    }
    return [
        {"type": "IngressReady", "status": "Unknown", "lastTransitionTime": T},
        {
            "type": "LatestDeploymentReady",
            "status": "Unknown",
            "reason": "PredictorConfigurationReady not ready",
            "lastTransitionTime": T,
        },
        {"type": "PredictorReady", **ready_like},
        {"type": "Ready", **ready_like},
    ]


def starting(generation: int) -> dict:
    return {
        "observedGeneration": generation,
        "conditions": conditions("Unknown", "RevisionMissing", REVISION_MISSING),
        "components": {"predictor": {"latestCreatedRevision": "skin-cancer-predictor-00001"}},
        "modelStatus": {
            "transitionStatus": "InProgress",
            "states": {"activeModelState": "", "targetModelState": "Loading"},
            "copies": {"failedCopies": 0, "totalCopies": 0},
        },
    }


def ready(generation: int) -> dict:
    return {
        "observedGeneration": generation,
        "url": "http://skin-cancer.team-a.example.com",
        "address": {"url": "http://skin-cancer.team-a.svc.cluster.local"},
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": T}
            for t in ("IngressReady", "LatestDeploymentReady", "PredictorReady", "Ready")
        ],
        "modelStatus": {
            "transitionStatus": "UpToDate",
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
        },
    }


# KServe's webhook or reconciler refused the predictor spec: no Knative Service is made, so
# observedGeneration is not set (UpdateModelTransitionStatus(InvalidSpec, ...)).
INVALID_SPEC = {
    "conditions": conditions("Unknown"),
    "modelStatus": {
        "transitionStatus": "InvalidSpec",
        "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {
            "reason": "InvalidPredictorSpec",
            "message": "No container configuration found in selected serving runtime",
        },
    },
}
# The storage initializer exited with an error (PropagateModelStatus: Terminated, reason Error).
LOAD_FAILED = {
    **starting(1),
    "modelStatus": {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {
            "reason": "ModelLoadFailed",
            "exitCode": 1,
            "message": "botocore.exceptions.ClientError: An error occurred (403) when calling the HeadObject "
            "operation: Forbidden",
        },
        "copies": {"failedCopies": 0, "totalCopies": 0},
    },
}
# Knative could not resolve the image: the revision failed, KServe copies Ready=False RevisionFailed.
IMAGE_MISSING = (
    'Revision "skin-cancer-predictor-00001" failed with message: Unable to fetch image '
    '"registry.example/skin-cancer:1.2.3": failed to resolve image to digest: GET '
    "https://registry.example/v2/skin-cancer/manifests/1.2.3: MANIFEST_UNKNOWN."
)
REVISION_FAILED = {
    **starting(1),
    "conditions": conditions("False", "RevisionFailed", IMAGE_MISSING),
    "modelStatus": {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
        "copies": {"failedCopies": 0, "totalCopies": 0},
    },
}


def deploy_with(statuses: list[dict], grace: float, timeout: float = 30, **stub_args):
    stub = StubKube(statuses=statuses, **stub_args)
    try:
        return inference_service.deploy(
            manifest(), timeout_s=timeout, poll_s=0.01, api=api_client(stub.url), failure_grace_s=grace
        ), stub
    finally:
        stub.close()


def test_a_refused_spec_fails_within_seconds_not_after_the_timeout(monkeypatch):
    started = time.monotonic()
    monkeypatch.setattr(inference_service, "SPEC_REFUSED_CONFIRM_S", 0.2)
    with pytest.raises(InferenceServiceFailed) as err:
        deploy_with([INVALID_SPEC], grace=600, timeout=600)
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert "InferenceService team-a/skin-cancer" in message
    assert "InvalidPredictorSpec" in message and "No container configuration found" in message
    assert "transitionStatus=InvalidSpec" in message and "kubectl -n team-a describe inferenceservice" in message
    assert isinstance(err.value, DeployError)  # callers catching DeployError still catch it


@pytest.mark.parametrize(
    "status,reason,text",
    [
        (LOAD_FAILED, "ModelLoadFailed", "HeadObject operation: Forbidden"),
        (REVISION_FAILED, "RevisionFailed", "Unable to fetch image"),
    ],
)
def test_a_lasting_failure_fails_after_the_grace_period(status, reason, text):
    started = time.monotonic()
    with pytest.raises(InferenceServiceFailed) as err:
        deploy_with([starting(1), status], grace=0.3, timeout=600)
    assert 0.3 <= time.monotonic() - started < 10
    message = str(err.value)
    assert f": {reason}: " in message and text in message and "team-a/skin-cancer" in message
    if reason == "ModelLoadFailed":
        assert "exit code 1" in message and "skin-cancer-s3" in message  # where to look


def test_a_failure_that_clears_within_the_grace_period_is_waited_out():
    """A registry or S3 blip: the revision fails, then the next pull or fetch works."""
    result, stub = deploy_with(
        [starting(1), REVISION_FAILED, REVISION_FAILED, LOAD_FAILED, starting(1), ready(1)], grace=60
    )
    assert result.internal_url == "http://skin-cancer.team-a.svc.cluster.local"
    assert sum(r["method"] == "GET" for r in stub.requests) == 6


def test_an_older_generations_failure_is_not_judged_against_the_new_one():
    stale_failure = {**LOAD_FAILED, "observedGeneration": 0}  # the pods of the previous spec
    result, _ = deploy_with([stale_failure, stale_failure, ready(1)], grace=0.0)
    assert result.generation == 1
    # A refusal carries no observedGeneration; one of the previous spec is replaced within seconds.
    result, _ = deploy_with([INVALID_SPEC, INVALID_SPEC, starting(1), ready(1)], grace=60)
    assert result.generation == 1


def test_runtime_not_recognized_is_waited_for():
    """KServe's own message for it is "Waiting for runtime to become available"."""
    waiting = {
        **INVALID_SPEC,
        "modelStatus": {
            **INVALID_SPEC["modelStatus"],
            "lastFailureInfo": {"reason": "RuntimeNotRecognized", "message": "Waiting for runtime to become available"},
        },
    }
    with pytest.raises(DeployError, match="not Ready after") as err:
        deploy_with([waiting], grace=600, timeout=0.3)
    assert not isinstance(err.value, InferenceServiceFailed)


def test_an_api_server_that_is_briefly_away_is_asked_again(monkeypatch):
    monkeypatch.setattr(inference_service.time, "sleep", lambda s: None)
    result, stub = deploy_with([starting(1), ready(1)], grace=60, unavailable=2)
    assert result.generation == 1
    assert [r["method"] for r in stub.requests] == ["PATCH"] * 3 + ["GET"] * 4
    with pytest.raises(DeployError, match="HTTP 503"):  # not for ever: apply gives up after 4 tries
        deploy_with([ready(1)], grace=60, unavailable=4)


def test_deploy_component_against_stub_api(kube, tmp_path, monkeypatch):
    """The KFP component's own body, with credentials from a kubeconfig as outside a cluster."""
    from components.deploy import deploy_model

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "stub",
                "clusters": [{"name": "stub", "cluster": {"server": kube.url}}],
                "users": [{"name": "stub", "user": {"token": "component-token"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(inference_service.time, "sleep", lambda s: None)
    out = deploy_model.python_func(
        model_artifact_uri="s3://pipeline-root/run/model",
        model_name="skin-cancer-classifier",
        model_version="9",
        service_name="skin-cancer",
        namespace="team-b",
        image="registry.example/skin-cancer:2",
        service_account="skin-cancer-serving",
        timeout_seconds=30,
    )
    assert out.url == "http://skin-cancer.team-b.example.com"
    assert out.internal_url == "http://skin-cancer.team-b.svc.cluster.local"
    applied = json.loads(out.manifest)
    assert validate_inference_service(applied) == []
    assert kube.requests[0]["auth"] == "Bearer component-token"
    assert kube.requests[0]["body"] == applied


# --- pipeline wiring ---------------------------------------------------------------------------


def test_pipeline_deploys_only_a_new_champion_when_asked(tmp_path):
    import yaml
    from kfp import compiler

    from pipelines.training_pipeline import build_pipeline

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(), str(path))
    spec = next(yaml.safe_load_all(path.read_text()))  # then the kubernetes platform spec
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["deploy"]["defaultValue"] is False
    assert params["inference_service_name"]["defaultValue"] == "skin-cancer"
    comps = spec["components"]
    conditions = {}
    for comp in [spec["root"], *comps.values()]:
        for task_name, task in comp.get("dag", {}).get("tasks", {}).items():
            cond = task.get("triggerPolicy", {}).get("condition")
            if cond:
                conditions[task_name] = cond
    champion = [c for c in conditions.values() if "champion_changed" in c]
    deploy = [c for c in conditions.values() if "pipelinechannel--deploy" in c]
    assert champion and champion[0].endswith("== true")
    assert deploy and deploy[0].endswith("== true")
    # Deploy and smoke test sit inside the innermost condition, smoke test after deploy.
    inner = next(
        comp for comp in comps.values() if {"deploy-model", "smoke-test"} <= set(comp.get("dag", {}).get("tasks", {}))
    )
    smoke = inner["dag"]["tasks"]["smoke-test"]
    assert smoke["inputs"]["parameters"]["url"]["taskOutputParameter"] == {
        "producerTask": "deploy-model",
        "outputParameterKey": "internal_url",
    }
