"""The compiled pipeline's tasks, run in the built runtime image as a cluster runs them, give what
kfp.local gives (marker ``container``; not in the default run).

    bash scripts/test-container.sh          # builds the image (cached layers), then this test

The tasks run with ``buildah run`` as user 10001, their exact ``command``/``args`` from the
compiled YAML, the executor input filled in as KFP's launcher does (tests/support/kfp_launcher.py),
S3 artifacts (moto) and MLflow (SQLite) on 127.0.0.1, and the AWS_*/MLFLOW_TRACKING_URI
variables the cluster's ConfigMap and Secret give. Then the same pipeline runs under kfp.local
and every output is compared:

* fingerprint: both output parameters equal;
* preprocess: ``fingerprint`` equal, ``report`` equal but for its timings (``seconds``,
  ``images_per_second``); each Dataset artifact's files byte-identical, its metadata equal;
* train (``deterministic: true``): the result JSON equal but for the MLflow run id, model URI,
  artifact URI and seconds (so metrics, threshold, params, config and device); the saved
  model's architecture (config.json, less Keras' ``shared_object_id`` memory addresses) and
  every weight array bit-identical; model.json equal but for the MLflow run id; the Metrics and
  ClassificationMetrics artifacts' metadata equal;
* select-and-register: version, alias, champion_changed, winner and every model's scores equal
  (each run registers under its own model name, so both are version 1 and @champion).

A second test shows the Keras cache rule in the image both ways (images/README.md).

The image is built by the session fixture with ``images/build.sh runtime`` (about 10 minutes
the first time, seconds when only the project's code changed: buildah keeps the layers), or
taken as is from ``SKIN_CANCER_TEST_IMAGE``. Skipped without buildah or root.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from tests.support.kfp_launcher import BuildahRunner, Launcher, ObjectStore
from tests.support.s3 import upload_tree

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.container, pytest.mark.timeout(3600)]

PARAMS = {
    "image_size": 32,
    "epochs": 2,
    "batch_size": 16,
    "seed": 1,
    "val_fraction": 0.25,
    "max_bad_fraction": 0.0,
    "models": [{"family": "basic", "name": "tiny", "width": 4, "augment": False, "deterministic": True}],
    "mlflow_tracking_uri": "",  # empty: the tasks use MLFLOW_TRACKING_URI from the environment, as on a cluster
}
TASKS = ("fingerprint-data", "preprocess", "train", "select-and-register")


@pytest.fixture(scope="session")
def runtime_image():
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (apt-get install buildah); the container tier needs it")
    if os.geteuid() != 0:
        pytest.skip("buildah --isolation chroot needs root here")
    image = os.environ.get("SKIN_CANCER_TEST_IMAGE")
    if image:
        if subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True).returncode:
            pytest.skip(
                f"SKIN_CANCER_TEST_IMAGE={image} is not in buildah's storage; build it: bash images/build.sh runtime"
            )
        return image
    image = "localhost/skin-cancer:container-test"
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", "images/build.sh", "runtime"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "IMAGE": image},
    )
    if proc.returncode:
        pytest.fail(f"bash images/build.sh runtime failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    print(f"runtime image {image} ready in {time.monotonic() - started:.0f} s")
    return image


def compiled_pipeline(path: Path) -> Path:
    from kfp import compiler

    from pipelines.training_pipeline import CompileSettings, build_pipeline

    compiler.Compiler().compile(build_pipeline(CompileSettings(retries=0)), str(path))
    return path


def run_under_kfp_local(tmp_path: Path, arguments: dict) -> dict[str, dict]:
    """task name -> {"parameters", "artifacts": {name: (local path, metadata)}} from kfp.local."""
    from kfp import local

    from pipelines.training_pipeline import CompileSettings, build_pipeline

    root = tmp_path / "local-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    build_pipeline(CompileSettings(retries=0))(**arguments)
    out = {}
    for output_file in root.rglob("executor_output.json"):
        executor_output = json.loads(output_file.read_text())
        arts = {
            name: (Path(lst["artifacts"][0]["uri"]), lst["artifacts"][0].get("metadata", {}))
            for name, lst in executor_output.get("artifacts", {}).items()
        }
        out[output_file.parent.name] = {"parameters": executor_output.get("parameterValues", {}), "artifacts": arts}
    return out


def tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def keras_contents(model_keras: bytes) -> tuple[dict, dict]:
    """(config.json, {weight path: array bytes}) of a .keras file; the zip's timestamps aside, and
    Keras' ``shared_object_id`` (the Python id() of a shared dtype policy: a memory address)."""
    import h5py

    def without_ids(value):
        if isinstance(value, dict):
            return {k: without_ids(v) for k, v in value.items() if k != "shared_object_id"}
        return [without_ids(v) for v in value] if isinstance(value, list) else value

    with zipfile.ZipFile(io.BytesIO(model_keras)) as z:
        config = without_ids(json.loads(z.read("config.json")))
        weights = {}
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as h5:
            h5.visititems(
                lambda name, obj: (
                    weights.__setitem__(name, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None
                )
            )
    return config, weights


def differences(a, b, path: str = "") -> list[str]:
    """Where two JSON values differ, as paths (for readable assertion messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_pipeline_tasks_in_the_runtime_image_match_kfp_local(
    runtime_image, s3_endpoint, mlflow_server, demo_raw, tmp_path, monkeypatch
):
    import boto3
    import mlflow

    bucket = "container-tier"
    boto3.client("s3").create_bucket(Bucket=bucket)
    data_uri = upload_tree(demo_raw, bucket, "raw")
    cluster_env = {
        k: os.environ[k]
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    } | {"MLFLOW_TRACKING_URI": mlflow_server}
    pipeline_yaml = compiled_pipeline(tmp_path / "pipeline.yaml")

    started = time.monotonic()
    launcher = Launcher(
        pipeline_yaml, BuildahRunner(runtime_image), f"s3://{bucket}/pipeline-root", tmp_path / "pods", cluster_env
    )
    in_image = launcher.run(
        {
            **PARAMS,
            "data_uri": data_uri,
            "experiment_name": "container-image",
            "registered_model_name": "container-image-model",
        },
        run_id="container-run-1",
    )
    print(f"tasks in the image: {time.monotonic() - started:.0f} s; skipped (cluster only): {in_image.skipped}")
    assert set(in_image.tasks) == set(TASKS)
    assert all(name.startswith("condition") for name in in_image.skipped)

    started = time.monotonic()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("KFP_RUN_ID", "local-run-1")
    local_run = run_under_kfp_local(
        tmp_path,
        {
            **PARAMS,
            "data_uri": data_uri,
            "experiment_name": "container-local",
            "registered_model_name": "container-local-model",
        },
    )
    print(f"kfp.local: {time.monotonic() - started:.0f} s")
    assert set(TASKS) <= set(local_run)
    store = ObjectStore()

    def fetched(uri: str) -> Path:
        dest = tmp_path / "fetched" / uri[len("s3://") :]
        store.download(uri, dest)
        return dest

    # fingerprint: the listing of S3 gives the same hash and count.
    fp = in_image.only("fingerprint-data")
    assert fp.parameters == local_run["fingerprint-data"]["parameters"]
    assert fp.parameters["image_count"] == 64

    # preprocess: same outputs, and byte-identical arrays and manifests.
    pre, local_pre = in_image.only("preprocess"), local_run["preprocess"]
    assert pre.parameters["fingerprint"] == local_pre["parameters"]["fingerprint"] == fp.parameters["fingerprint"]
    timings = {"seconds", "images_per_second"}
    report, local_report = json.loads(pre.parameters["report"]), json.loads(local_pre["parameters"]["report"])
    assert {k: v for k, v in report.items() if k not in timings} == {
        k: v for k, v in local_report.items() if k not in timings
    }
    for split, art in pre.artifacts.items():
        local_path, local_meta = local_pre["artifacts"][split]
        assert art["uri"].startswith(f"s3://{bucket}/pipeline-root/skin-cancer-training/container-run-1/preprocess/")
        assert art["metadata"] == local_meta, split
        files = tree(fetched(art["uri"]))
        assert files and files == tree(local_path), f"{split}: the Dataset files differ"

    # train: deterministic, so the same model bit for bit.
    trained, local_trained = in_image.only("train"), local_run["train"]
    result, local_result = json.loads(trained.parameters["Output"]), json.loads(local_trained["parameters"]["Output"])
    per_run = {"run_id", "model_uri", "artifact_uri", "seconds", "lineage", "subgroups"}
    assert {k: v for k, v in result.items() if k not in per_run} == {
        k: v for k, v in local_result.items() if k not in per_run
    }
    # The evidence per subgroup: the same report (same bytes, so the same SHA-256), in each run's MLflow run.
    where = ("uri", "png")
    assert {k: v for k, v in result["subgroups"].items() if k not in where} == {
        k: v for k, v in local_result["subgroups"].items() if k not in where
    }
    assert result["subgroups"]["uri"] == f"runs:/{result['run_id']}/subgroups.json"

    def without_split_uris(lineage: dict) -> dict:  # each run's artifacts live under its own root
        return {
            **lineage,
            "datasets": {
                k: {f: v for f, v in d.items() if f != "uri" or k == "raw"} for k, d in lineage["datasets"].items()
            },
        }

    assert without_split_uris(result["lineage"]) == without_split_uris(local_result["lineage"])
    for split in ("train", "val", "test"):
        assert result["lineage"]["datasets"][split]["uri"] == pre.artifacts[f"{split}_data"]["uri"]
    assert result["artifact_uri"] == trained.artifacts["model"]["uri"]
    model_dir, local_model_dir = fetched(trained.artifacts["model"]["uri"]), local_trained["artifacts"]["model"][0]
    config, weights = keras_contents((model_dir / "model.keras").read_bytes())
    local_config, local_weights = keras_contents((local_model_dir / "model.keras").read_bytes())
    assert not differences(config, local_config), differences(config, local_config)[:20]
    assert weights and weights.keys() == local_weights.keys()
    assert [k for k in weights if weights[k] != local_weights[k]] == [], "weights differ"
    meta, local_meta = (json.loads((d / "model.json").read_text()) for d in (model_dir, local_model_dir))
    assert meta.pop("mlflow_run_id") == result["run_id"]
    assert meta == {k: v for k, v in local_meta.items() if k != "mlflow_run_id"}
    for name in ("metrics", "roc"):
        assert trained.artifacts[name]["metadata"] == local_trained["artifacts"][name][1], name
    run = mlflow.MlflowClient(mlflow_server).get_run(result["run_id"])
    assert run.data.tags["model_name"] == "tiny"

    # select-and-register: the same decision, registered in MLflow by the task in the image.
    chosen, local_chosen = in_image.only("select-and-register"), local_run["select-and-register"]
    for key in ("model_version", "champion_changed"):
        assert chosen.parameters[key] == local_chosen["parameters"][key], key
    assert chosen.parameters["model_name"] == "container-image-model"
    assert chosen.parameters["model_artifact_uri"] == trained.artifacts["model"]["uri"]
    summary, local_summary = (json.loads(p["summary_json"]) for p in (chosen.parameters, local_chosen["parameters"]))
    assert summary["winner"] == local_summary["winner"] == "tiny"
    assert summary["data_fingerprint"] == local_summary["data_fingerprint"]
    assert summary["previous_champion"] == local_summary["previous_champion"]
    registered = {k: v for k, v in summary["registered_model"].items() if k not in ("name", "model_uri")}
    assert registered == {k: v for k, v in local_summary["registered_model"].items() if k not in ("name", "model_uri")}
    assert [{k: v for k, v in m.items() if k not in per_run} for m in summary["models"]] == [
        {k: v for k, v in m.items() if k not in per_run} for m in local_summary["models"]
    ]
    version = mlflow.MlflowClient(mlflow_server).get_model_version_by_alias("container-image-model", "champion")
    assert version.version == chosen.parameters["model_version"] == "1"
    assert version.tags["pipeline_run"] == "container-run-1"  # the pod label KFP_RUN_ID comes from


def test_keras_cache_is_read_only_when_the_user_may_write_it(runtime_image):
    """keras.utils.get_file uses $KERAS_HOME only if the caller may write to it: with the image's
    permissions (bake_weights.py share) uid 10001 gets the cached file; with a root-owned
    read-only cache the same call goes to /tmp/.keras and tries to download."""
    script = ROOT / "images" / "bake_weights.py"
    probe = "skin-cancer keras cache probe\n"
    digest = hashlib.sha256(probe.encode()).hexdigest()
    ctr = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", runtime_image], check=True, capture_output=True, text=True
    ).stdout.strip()

    def run(user: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                "buildah",
                "run",
                "--isolation",
                "chroot",
                "--user",
                user,
                "-v",
                f"{script}:/tmp/bake_weights.py:ro",
                ctr,
                "--",
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        placed = run(
            "0:0",
            "sh",
            "-ec",
            f'printf "{probe.rstrip()}\\n" > "$KERAS_HOME/models/probe.bin" && python3 /tmp/bake_weights.py share',
        )
        assert placed.returncode == 0, placed.stderr
        shared = run("10001:10001", "python3", "/tmp/bake_weights.py", "check", f"probe.bin={digest}")
        assert shared.returncode == 0 and "no download" in shared.stdout, shared.stdout + shared.stderr
        random_uid = run("1000680000:0", "python3", "/tmp/bake_weights.py", "check", f"probe.bin={digest}")
        assert random_uid.returncode == 0, random_uid.stdout + random_uid.stderr
        assert run("0:0", "sh", "-ec", 'chown -R 0:0 "$KERAS_HOME" && chmod -R 755 "$KERAS_HOME"').returncode == 0
        root_owned = run("10001:10001", "python3", "/tmp/bake_weights.py", "check", f"probe.bin={digest}")
        assert root_owned.returncode != 0 and "127.0.0.1:9/unreachable" in root_owned.stderr, root_owned.stderr
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def test_the_runtime_image_holds_exactly_the_runtime_lock(runtime_image):
    """Issue 21: every distribution in the image is one images/requirements.lock pins, at its
    version (pip installed them with --require-hashes: each file's hash was checked against the
    lock), and every package the lock pins for the image's Python is there. Beside them only pip
    (the installer that came with the venv) and the project's own wheel."""
    from tests.support.lockfile import RUNTIME_LOCK, exported_pins

    probe = (
        "import json, platform, sys; from importlib import metadata as m; "
        "print(json.dumps({'python': platform.python_version(), 'dists': "
        "{d.metadata['Name']: d.version for d in m.distributions()}}))"
    )
    out = BuildahRunner(runtime_image)(["python3", "-c", probe], {}, {}, timeout=120)
    found = json.loads(out.strip().splitlines()[-1])
    from packaging.markers import default_environment
    from packaging.utils import canonicalize_name

    environment = {
        **default_environment(),
        "python_full_version": found["python"],
        "python_version": ".".join(found["python"].split(".")[:2]),
        "sys_platform": "linux",
    }
    want = {name: version for name, (version, _) in exported_pins(RUNTIME_LOCK, environment).items()}
    have = {canonicalize_name(n): v for n, v in found["dists"].items()}
    extra = {n: v for n, v in have.items() if n not in want}
    assert set(extra) == {"pip", "skin-cancer-kfp"}, extra
    assert {n: (v, have.get(n)) for n, v in want.items() if have.get(n) != v} == {}
