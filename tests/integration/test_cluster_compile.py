"""The pipeline as a cluster gets it: the compiled IR YAML, read back and checked piece by piece,
and the data fingerprint that keeps KFP's cache honest, run for real under kfp.local."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLANTED = {  # fake credentials in the compiling process's environment: none may reach the YAML
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEYID0001",
    "AWS_SECRET_ACCESS_KEY": "planted-secret-access-key-0001",
    "MLFLOW_TRACKING_PASSWORD": "planted-mlflow-password-0001",
    "MLFLOW_TRACKING_USERNAME": "planted-mlflow-user-0001",
    "KFP_TOKEN": "planted-kfp-token-0001",
}
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def compile_cli(out: Path, *flags: str) -> tuple[dict, dict]:
    """`skin-cancer compile FLAGS` in a fresh process (images are fixed at import); (spec, platform)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SKIN_CANCER_")}, **PLANTED}
    cmd = [str(Path(sys.executable).parent / "skin-cancer"), "compile", "--output", str(out), *flags]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    for value in PLANTED.values():
        assert value not in p.stdout + p.stderr + out.read_text()
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, dict, dict]:
    """`skin-cancer compile --no-require-approval` (the pipeline that promotes and deploys by
    itself: every task), in a fresh process (images are fixed at import), with GPU placement."""
    out = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SKIN_CANCER_")}, **PLANTED}
    cmd = [
        str(Path(sys.executable).parent / "skin-cancer"),
        "compile",
        "--output",
        str(out),
        "--image",
        "registry.example/sc:9.9.9",
        "--train-image",
        "registry.example/sc-gpu:9.9.9",
        "--parallelism",
        "2",
        "--accelerator-type",
        "nvidia.com/gpu",
        "--gpus-per-model",
        "2",
        "--node-selector",
        "cloud.google.com/gke-accelerator=nvidia-l4",
        "--node-selector",
        "pool=gpu",
        "--toleration",
        json.dumps(TOLERATION),
        "--no-require-approval",
    ]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    for value in PLANTED.values():
        assert value not in p.stdout + p.stderr
    spec, platform = yaml.safe_load_all(out.read_text())
    return out, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline: at the root and inside loops and conditions."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {name: t for dag in dags for name, t in dag["tasks"].items()}


def container_tasks(spec: dict) -> dict[str, dict]:
    """The tasks that run a container (not the loop or condition groups)."""
    return {n: t for n, t in tasks(spec).items() if "executorLabel" in spec["components"][t["componentRef"]["name"]]}


CORE = ("fingerprint-data", "preprocess", "train", "select-and-register")


def test_compile_output_loads_back_as_a_component(compiled):
    from kfp.components import load_component_from_file

    path, spec, _ = compiled
    component = load_component_from_file(str(path))
    assert component.name == "skin-cancer-training"
    assert component.description.startswith("Train several skin-cancer classifiers")
    assert {"data_uri", "models", "s3_secret", "mlflow_secret", "config_map"} <= set(component.component_spec.inputs)


def test_models_fan_out_in_a_parallel_for(compiled):
    _, spec, _ = compiled
    (loop,) = [t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--models"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    assert loop["inputs"]["parameters"]["pipelinechannel--models"] == {"componentInputParameter": "models"}
    assert "train" in spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]


def test_images_accelerator_and_requests(compiled):
    _, spec, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert {f"exec-{t}" for t in CORE} <= set(executors)
    for name, executor in executors.items():  # every task, including those added later
        container = executor["container"]
        in_train_image = name in ("exec-train", "exec-preprocess")  # see the runtime-image test below
        assert container["image"] == (
            "registry.example/sc-gpu:9.9.9" if in_train_image else "registry.example/sc:9.9.9"
        )
        resources = container["resources"]
        assert resources["cpuRequest"] > 0 and resources["memoryRequest"] > 0, name  # requests on every task
        assert ("accelerator" in resources) == (name == "exec-train"), name
    accelerator = executors["exec-train"]["container"]["resources"]["accelerator"]
    assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "2")
    train = executors["exec-train"]["container"]["resources"]
    assert (train["resourceCpuRequest"], train["resourceMemoryRequest"]) == ("4", "16G")


def test_gpu_node_selector_and_tolerations_only_on_training(compiled):
    _, _, k8s = compiled
    train = k8s["exec-train"]
    assert train["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "gpu"}
    assert train["tolerations"] == [TOLERATION]
    for name, executor in k8s.items():
        if name != "exec-train":
            assert "nodeSelector" not in executor and "tolerations" not in executor, name


def test_credentials_come_from_secrets_named_by_pipeline_parameters(compiled):
    from pipelines import tasks

    _, spec, k8s = compiled
    readers = {n: e for n, e in k8s.items() if "secretAsEnv" in e}
    assert {f"exec-{t}" for t in CORE} <= set(readers)  # every task that touches S3 or MLflow
    for name, executor in readers.items():
        # inside a loop or condition the name arrives through the group's inputs
        prefix = (
            ""
            if name in ("exec-fingerprint-data", "exec-preprocess", "exec-select-and-register")
            else "pipelinechannel--"
        )
        s3, mlflow_ = executor["secretAsEnv"]
        assert s3["secretNameParameter"] == {"componentInputParameter": f"{prefix}s3_secret"}
        assert {m["secretKey"]: m["envVar"] for m in s3["keyToEnv"]} == tasks.S3_SECRET_KEYS
        assert s3["optional"] is False
        assert mlflow_["secretNameParameter"] == {"componentInputParameter": f"{prefix}mlflow_secret"}
        assert {m["secretKey"]: m["envVar"] for m in mlflow_["keyToEnv"]} == tasks.MLFLOW_SECRET_KEYS
        assert mlflow_["optional"] is True
        (config,) = executor["configMapAsEnv"]
        assert config["configMapNameParameter"] == {"componentInputParameter": f"{prefix}config_map"}
        assert {m["configMapKey"] for m in config["keyToEnv"]} == set(tasks.CONFIG_MAP_KEYS)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["s3_secret"]["defaultValue"] == tasks.S3_SECRET
    assert params["mlflow_secret"]["defaultValue"] == tasks.MLFLOW_SECRET
    (loop,) = [t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    loop_inputs = loop["inputs"]["parameters"]
    assert loop_inputs["pipelinechannel--s3_secret"] == {"componentInputParameter": "s3_secret"}


def test_compiled_yaml_holds_no_credential_value(compiled):
    path, spec, _ = compiled
    text = path.read_text()
    for value in PLANTED.values():
        assert value not in text
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "env" not in executor["container"]  # nothing baked in with set_env_variable


def test_retries_with_backoff_on_steps_that_touch_s3_or_mlflow(compiled):
    _, spec, _ = compiled
    all_tasks = tasks(spec)
    expected = {"fingerprint-data": 3, "preprocess": 3, "select-and-register": 3}
    assert "retryPolicy" not in all_tasks["train"]  # ignored inside a ParallelFor (tests/support/ir_rules.py)
    for name, count in expected.items():
        policy = all_tasks[name]["retryPolicy"]
        assert policy["maxRetryCount"] == count, name
        assert policy["backoffDuration"] == "30s" and policy["backoffFactor"] == 2.0, name
        assert policy["backoffMaxDuration"] == "3600s", name


def test_fingerprint_is_never_cached_and_feeds_preprocessing(compiled):
    _, spec, _ = compiled
    all_tasks = tasks(spec)
    assert all_tasks["fingerprint-data"]["cachingOptions"].get("enableCache", False) is False
    for name in ("preprocess", "train"):
        assert all_tasks[name]["cachingOptions"]["enableCache"] is True, name
    feed = all_tasks["preprocess"]["inputs"]["parameters"]["data_fingerprint"]
    assert feed == {"taskOutputParameter": {"producerTask": "fingerprint-data", "outputParameterKey": "fingerprint"}}
    assert all_tasks["fingerprint-data"]["inputs"]["parameters"]["data_uri"] == {"componentInputParameter": "data_uri"}
    assert "fingerprint-data" in all_tasks["preprocess"]["dependentTasks"]


def test_select_and_register_is_never_cached(compiled):
    """Its decision depends on the registry's state, not on its inputs: a cache hit would replay an
    old champion_changed (and deploy an old champion). Nor are the steps after it cached."""
    _, spec, _ = compiled
    all_tasks = tasks(spec)
    for name in ("select-and-register", "deploy-model", "smoke-test"):
        assert all_tasks[name]["cachingOptions"].get("enableCache", False) is False, name


def _train_task(spec: dict) -> tuple[dict, str]:
    """The training task and the image of its executor."""
    train = tasks(spec)["train"]
    label = spec["components"][train["componentRef"]["name"]]["executorLabel"]
    return train, spec["deploymentSpec"]["executors"][label]["container"]["image"]


def test_train_gets_nothing_that_changes_with_only_the_runtime_image(compiled, tmp_path):
    """Rebuilding the runtime image must not change anything in training's cache key
    (cacheutils/cache.go: input parameter values, input artifacts' ids, image, command):
    recompiled with another runtime image, the training task is identical and names only its own
    image, and so is preprocessing, whose artifacts are training's inputs (a preprocessing rerun
    makes new artifacts, hence a training cache miss)."""
    from kfp import compiler

    from pipelines.training_pipeline import CompileSettings, build_pipeline

    _, spec, _ = compiled
    train, image = _train_task(spec)
    assert image == "registry.example/sc-gpu:9.9.9"
    constants = {
        k: v["runtimeValue"]["constant"] for k, v in train["inputs"]["parameters"].items() if "runtimeValue" in v
    }
    assert constants == {"train_image": "registry.example/sc-gpu:9.9.9"}
    assert not any("registry.example/sc:" in json.dumps(v) for v in train["inputs"]["parameters"].values())

    def compiled_with(runtime: str) -> dict:
        path = tmp_path / f"{runtime.rsplit(':', 1)[1]}.yaml"
        compiler.Compiler().compile(build_pipeline(CompileSettings(image=runtime, train_image="r/gpu:1")), str(path))
        return next(yaml.safe_load_all(path.read_text()))

    one, two = compiled_with("r/runtime:1"), compiled_with("r/runtime:2")
    assert _train_task(one) == _train_task(two)
    assert tasks(one)["preprocess"] == tasks(two)["preprocess"]
    assert (
        one["deploymentSpec"]["executors"]["exec-preprocess"] == two["deploymentSpec"]["executors"]["exec-preprocess"]
    )
    (loop,) = [t for t in one["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert {a["taskOutputArtifact"]["producerTask"] for a in loop["inputs"]["artifacts"].values()} == {"preprocess"}
    assert one["components"]["comp-train"] == two["components"]["comp-train"]
    assert one["deploymentSpec"]["executors"]["exec-train"] == two["deploymentSpec"]["executors"]["exec-train"]
    # ... while the selection step, which runs in the runtime image and is not cached, records it.
    select = tasks(two)["select-and-register"]["inputs"]["parameters"]["runtime_image"]
    assert select == {"runtimeValue": {"constant": "r/runtime:2"}}


def test_the_registered_version_still_names_both_images(monkeypatch):
    """Training records its own image; selection adds the runtime one (lineage.with_runtime_image)."""
    from components.core.registry import lineage
    from pipelines.training_pipeline import CompileSettings

    s = CompileSettings(image="r/runtime:1", train_image="r/gpu:1")
    monkeypatch.setenv("KFP_RUN_ID", "run-1")  # a cluster pod
    trained = lineage.describe("", "fp", {}, {}, f"train={s.train_image}")
    merged = lineage.with_runtime_image(trained, s.image)
    assert lineage.version_tags(merged)["images"] == s.image_refs() == "runtime=r/runtime:1,train=r/gpu:1"
    assert trained["images"] == "train=r/gpu:1"  # not changed in place
    assert lineage.with_runtime_image(merged, "r/other:2") == merged  # named already
    monkeypatch.delenv("KFP_RUN_ID")  # kfp.local: no image is claimed, none added
    assert lineage.with_runtime_image(lineage.describe("", "fp", {}, {}, "train=r/gpu:1"), s.image)["images"] == ""


def test_dashboard_names_description_and_visual_outputs(compiled):
    _, spec, _ = compiled
    names = {k: t["taskInfo"]["name"] for k, t in container_tasks(spec).items()}
    assert {k: names[k] for k in CORE} == {
        "fingerprint-data": "Fingerprint raw data",
        "preprocess": "Preprocess images",
        "train": "Train model",
        "select-and-register": "Select and register champion",
    }
    for key, name in names.items():  # every step shows a sentence in the dashboard, not its function name
        assert name != key and " " in name, key
    assert spec["pipelineInfo"]["description"]
    assert all(p.get("description") for p in spec["root"]["inputDefinitions"]["parameters"].values())
    outputs = {
        name: {
            k: v["artifactType"]["schemaTitle"] for k, v in c.get("outputDefinitions", {}).get("artifacts", {}).items()
        }
        for name, c in spec["components"].items()
    }
    assert outputs["comp-train"] == {
        "model": "system.Model",
        "metrics": "system.Metrics",
        "roc": "system.ClassificationMetrics",
    }
    assert outputs["comp-select-and-register"] == {
        "summary": "system.Markdown",
        "dashboard": "system.HTML",
        "model_card": "system.Markdown",
        "ensemble_model": "system.Model",  # the average of the best models, when it won
    }


def test_with_require_approval_no_task_can_move_the_champion_or_deploy(tmp_path):
    """`skin-cancer compile` (approval is its default): the selection is select-and-propose, which
    has no input that makes it promote, and nothing deploys or smoke-tests; the evidence gets the
    run's name from the driver's placeholder. The deploy pipeline serves only an approved champion."""
    spec, _ = compile_cli(tmp_path / "approval.yaml", "--image", "registry.example/sc:9.9.9")
    assert set(spec["deploymentSpec"]["executors"]) == {
        "exec-fingerprint-data",
        "exec-preprocess",
        "exec-train",
        "exec-select-and-propose",
    }
    assert set(container_tasks(spec)) == {"fingerprint-data", "preprocess", "train", "select-and-propose"}
    assert not any("triggerPolicy" in t for t in tasks(spec).values())  # no condition left behind
    propose = tasks(spec)["select-and-propose"]
    assert "require_approval" not in spec["components"]["comp-select-and-propose"]["inputDefinitions"]["parameters"]
    assert propose["inputs"]["parameters"]["kfp_run_name"] == {"runtimeValue": {"constant": "{{$.pipeline_job_name}}"}}
    assert propose["inputs"]["parameters"]["submitted_by"] == {"componentInputParameter": "submitted_by"}
    assert propose["cachingOptions"].get("enableCache", False) is False
    assert "propose the best for a person's approval" in spec["pipelineInfo"]["description"]
    executor = spec["deploymentSpec"]["executors"]["exec-select-and-propose"]["container"]
    assert "select_and_propose" in " ".join(executor["command"] + executor.get("args", []))

    deploy, _ = compile_cli(tmp_path / "deploy.yaml", "--pipeline", "deploy", "--image", "registry.example/sc:9.9.9")
    assert deploy["pipelineInfo"]["name"] == "skin-cancer-deploy"
    steps = container_tasks(deploy)
    assert set(steps) == {"approved-champion", "deploy-model", "smoke-test"}
    assert steps["deploy-model"]["inputs"]["parameters"]["model_artifact_uri"] == {
        "taskOutputParameter": {"producerTask": "approved-champion", "outputParameterKey": "model_artifact_uri"}
    }
    assert all(t["cachingOptions"].get("enableCache", False) is False for t in steps.values())


def test_retries_can_be_switched_off(tmp_path):
    from kfp import compiler

    from pipelines.training_pipeline import CompileSettings, build_pipeline

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(CompileSettings(retries=0)), str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    assert not any("retryPolicy" in t for t in tasks(spec).values())


# --- the fingerprint, and KFP's cache, for real under kfp.local ------------------------------


def test_fingerprint_component_lists_without_reading_and_checks_the_layout(kfp_local, demo_raw, tmp_path):
    from components.core.data.dataset import scan_raw
    from components.fingerprint import fingerprint_data

    task = fingerprint_data(data_uri=str(demo_raw))
    assert task.outputs["fingerprint"] == scan_raw(str(demo_raw)).fingerprint
    assert task.outputs["image_count"] == 64
    broken = tmp_path / "broken"
    shutil.copytree(demo_raw / "train", broken / "train")  # no test/ folder
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=False
    )
    failed = fingerprint_data(data_uri=str(broken))
    assert failed.outputs == {}


def test_fingerprint_of_s3_data_changes_when_an_image_lands(s3_bucket, demo_raw):
    import boto3

    from components.core.data.dataset import scan_raw
    from tests.support.s3 import upload_tree

    uri = upload_tree(demo_raw, s3_bucket, "raw")
    first = scan_raw(uri).fingerprint
    assert scan_raw(uri).fingerprint == first  # same listing, same key
    boto3.client("s3").put_object(
        Bucket=s3_bucket,
        Key="raw/train/benign/new.jpg",
        Body=(demo_raw / "train/benign").glob("*.jpg").__next__().read_bytes(),
    )
    assert scan_raw(uri).fingerprint != first
