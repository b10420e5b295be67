"""Run a compiled pipeline's container tasks in a locally built image, the way KFP's v2 backend does.

What the cluster does, and what this module does in its place (read from kubeflow/pipelines
backend/src/v2: driver/driver.go ``provisionOutputs``, component/launcher_v2.go):

* driver: resolves each task's inputs from pipeline parameters and upstream outputs, and
  provisions outputs: artifact URIs ``<pipeline_root>/<pipeline>/<run>/<task>/<uuid>/<name>``,
  output parameter files ``/tmp/kfp/outputs/<name>``, the executor output file
  ``/s3/<...>/<task>/<uuid>/output_metadata.json``;
* launcher: adds default parameter values, downloads input artifacts from S3 to the local path
  KFP's SDK expects (``s3://b/k`` -> ``/s3/b/k``), replaces ``{{$}}`` in the executor's
  ``command``/``args`` with the ExecutorInput JSON, runs them, reads the executor output
  (parameters there win over the output files), and uploads output artifacts to S3.

Here the task runs with ``buildah run`` in a fresh container of the image, as the image's
user, with the host network (S3 and MLflow on 127.0.0.1), and with the environment the
cluster would inject (kfp-kubernetes ``secretAsEnv``/``configMapAsEnv``/``fieldPathAsEnv``
of the compiled YAML, filled from ``cluster_env``). ``/s3`` and ``/tmp/kfp`` are fresh host
folders per task, as a pod's scratch volumes are. Nothing is hard-coded about this project's
tasks: names, inputs and outputs come from the YAML.

Not emulated: caching, retries, MLMD, and tasks under a ``triggerPolicy`` condition (the
deploy branch: it needs Kubernetes), which are skipped and listed in ``PipelineRun.skipped``.

Used by tests/container/test_container_tasks.py (``bash scripts/test-container.sh``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OUTPUT_PARAMETER_DIR = "/tmp/kfp/outputs"  # driver.go provisionOutputs
RUN_ID_FIELD = "metadata.labels['pipeline/runid']"


@dataclass
class TaskResult:
    name: str
    parameters: dict[str, Any]
    artifacts: dict[str, dict]  # name -> runtime artifact (name, uri, type, metadata)
    executor_input: dict
    log: str


@dataclass
class PipelineRun:
    run_id: str
    tasks: dict[str, list[TaskResult]] = field(default_factory=dict)  # task name -> one per loop iteration
    skipped: list[str] = field(default_factory=list)

    def only(self, task: str) -> TaskResult:
        (result,) = self.tasks[task]
        return result


def pb_value(value: Any) -> Any:
    """A value as it comes out of a protobuf Value (protojson): numbers are doubles, and an
    integral double prints without a fraction."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, dict):
        return {k: pb_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pb_value(v) for v in value]
    raise TypeError(f"not a protobuf Value: {value!r}")


def text_to_value(text: str, kind: str) -> Any:
    """metadata.TextToPbValue: an output parameter file's text, by the parameter's type."""
    if kind == "STRING":
        return text
    if kind == "NUMBER_INTEGER":
        return int(text.strip())
    if kind == "NUMBER_DOUBLE":
        return float(text.strip())
    if kind == "BOOLEAN":
        return text.strip().lower() in ("1", "t", "true")
    return json.loads(text)  # LIST, STRUCT


def local_path_for_uri(uri: str) -> str:
    """component.LocalPathForURI (the launcher) = Artifact._get_path (the SDK)."""
    for scheme, mount in (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/")):
        if uri.startswith(scheme):
            return mount + uri[len(scheme) :]
    raise ValueError(f"unsupported artifact URI {uri}")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


class ObjectStore:
    """objectstore.DownloadBlob / UploadBlob for s3:// with boto3 (a key is a file or a prefix)."""

    def __init__(self):
        import boto3

        self.client = boto3.client("s3")

    def download(self, uri: str, dest: Path) -> None:
        bucket, key = split_s3(uri)
        listed = self.client.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
        exact = [o for o in listed if o["Key"] == key]
        if exact:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, key, str(dest))
            return
        paginator = self.client.get_paginator("list_objects_v2")
        found = False
        for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/"):
            for obj in page.get("Contents", []):
                target = dest / obj["Key"][len(key.rstrip("/")) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(bucket, obj["Key"], str(target))
                found = True
        if not found:
            raise FileNotFoundError(f"failed to download input artifact: nothing at {uri}")

    def upload(self, src: Path, uri: str) -> None:
        bucket, key = split_s3(uri)
        if src.is_file():
            self.client.upload_file(str(src), bucket, key)
            return
        if not src.exists():
            return  # the launcher allows components not to produce an output file
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            self.client.upload_file(str(path), bucket, f"{key.rstrip('/')}/{path.relative_to(src).as_posix()}")


class BuildahRunner:
    """Runs one task's command in a fresh container of ``image`` (buildah, chroot isolation)."""

    def __init__(self, image: str, user: str = "10001:10001", buildah: str = "buildah"):
        self.image, self.user, self.buildah = image, user, buildah

    def __call__(self, argv: list[str], env: dict[str, str], mounts: dict[Path, str], timeout: float) -> str:
        ctr = subprocess.run(
            [self.buildah, "from", "--pull-never", "--quiet", self.image], check=True, capture_output=True, text=True
        ).stdout.strip()
        try:
            cmd = [self.buildah, "run", "--isolation", "chroot", "--network", "host", "--user", self.user]
            for host, target in mounts.items():
                cmd += ["-v", f"{host}:{target}"]
            for key, value in env.items():
                cmd += ["--env", f"{key}={value}"]
            proc = subprocess.run([*cmd, ctr, "--", *argv], capture_output=True, text=True, timeout=timeout)
        finally:
            subprocess.run([self.buildah, "rm", ctr], capture_output=True)
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"task exited {proc.returncode}:\n{log[-6000:]}")
        return log


class Launcher:
    """Walks the compiled DAG (driver) and runs each container task (launcher)."""

    def __init__(
        self,
        pipeline_yaml: Path,
        runner,
        pipeline_root: str,
        work: Path,
        cluster_env: dict[str, str],
        uid: int = 10001,
        timeout: float = 900,
    ):
        docs = list(yaml.safe_load_all(Path(pipeline_yaml).read_text()))
        self.spec = docs[0]
        self.platform = next((d for d in docs[1:] if d and "platforms" in d), {}).get("platforms", {})
        self.runner, self.root, self.work = runner, pipeline_root.rstrip("/"), Path(work)
        self.cluster_env, self.uid, self.timeout = cluster_env, uid, timeout
        self.store = ObjectStore()
        self.counter = 0

    # ---- driver ---------------------------------------------------------------------------
    def run(self, arguments: dict[str, Any], run_id: str | None = None) -> PipelineRun:
        root = self.spec["root"]
        params = {
            name: d["defaultValue"]
            for name, d in root["inputDefinitions"].get("parameters", {}).items()
            if "defaultValue" in d
        }
        params.update(arguments)
        missing = set(root["inputDefinitions"].get("parameters", {})) - set(params)
        if missing:
            raise ValueError(f"pipeline parameters without a value: {sorted(missing)}")
        run = PipelineRun(run_id=run_id or f"run-{uuid.uuid4().hex[:8]}")
        self._run_dag(root["dag"], {"parameters": pb_value(params), "artifacts": {}}, run)
        return run

    def _run_dag(self, dag: dict, scope: dict, run: PipelineRun) -> dict:
        """Runs every task of ``dag``; returns {task name: {"parameters", "artifacts"}}."""
        done: dict[str, dict] = {}
        pending = dict(dag["tasks"])
        while pending:
            ready = [n for n, t in pending.items() if set(self._upstream(t)) <= set(done) | set(run.skipped)]
            if not ready:
                raise RuntimeError(f"cannot order tasks {sorted(pending)}")
            for name in sorted(ready):
                task = pending.pop(name)
                if "triggerPolicy" in task or set(self._upstream(task)) & set(run.skipped):
                    run.skipped.append(name)  # a condition (deploy): needs Kubernetes
                    continue
                done[name] = self._run_task(name, task, scope, done, run)
        return done

    @staticmethod
    def _upstream(task: dict) -> list[str]:
        ups = list(task.get("dependentTasks", []))
        for kind in ("parameters", "artifacts"):
            for spec in task.get("inputs", {}).get(kind, {}).values():
                ref = spec.get("taskOutputParameter") or spec.get("taskOutputArtifact")
                if ref:
                    ups.append(ref["producerTask"])
        return ups

    def _inputs(self, task: dict, scope: dict, done: dict, run: PipelineRun) -> tuple[dict, dict]:
        """(parameters, artifacts): from the enclosing DAG's inputs, upstream outputs or constants.
        A constant that is exactly a run placeholder is the run's value, as the driver resolves it
        (driver/resolve.go: ``{{$.pipeline_job_name}}`` the display name, ``..._uuid`` the id)."""
        placeholders = {
            "{{$.pipeline_job_name}}": run.run_id,  # no display name here: the id stands for it
            "{{$.pipeline_job_uuid}}": run.run_id,
            "{{$.pipeline_job_resource_name}}": run.run_id,
        }
        resolved = {}
        for kind, from_dag, from_task, key in (
            ("parameters", "componentInputParameter", "taskOutputParameter", "outputParameterKey"),
            ("artifacts", "componentInputArtifact", "taskOutputArtifact", "outputArtifactKey"),
        ):
            resolved[kind] = {}
            for name, spec in task.get("inputs", {}).get(kind, {}).items():
                if from_dag in spec:
                    resolved[kind][name] = scope[kind][spec[from_dag]]
                elif from_task in spec:
                    ref = spec[from_task]
                    resolved[kind][name] = done[ref["producerTask"]][kind][ref[key]]
                elif kind == "parameters" and "runtimeValue" in spec:
                    constant = spec["runtimeValue"]["constant"]
                    resolved[kind][name] = pb_value(
                        placeholders.get(constant, constant) if isinstance(constant, str) else constant
                    )
                else:
                    raise NotImplementedError(f"input {name}: {spec}")
        return resolved["parameters"], resolved["artifacts"]

    def _run_task(self, name: str, task: dict, scope: dict, done: dict, run: PipelineRun) -> dict:
        component = self.spec["components"][task["componentRef"]["name"]]
        params, arts = self._inputs(task, scope, done, run)
        if "dag" not in component:
            return self._launch(name, component, params, arts, run)
        iterator = task.get("parameterIterator")
        if iterator is None:
            inner = self._run_dag(component["dag"], {"parameters": params, "artifacts": arts}, run)
            return self._dag_outputs(component, [inner], loop=False)
        items = params[iterator["items"]["inputParameter"]]
        if isinstance(items, str):
            items = json.loads(items)
        inners = [
            self._run_dag(
                component["dag"], {"parameters": {**params, iterator["itemInput"]: item}, "artifacts": arts}, run
            )
            for item in items
        ]
        return self._dag_outputs(component, inners, loop=True)

    @staticmethod
    def _dag_outputs(component: dict, iterations: list[dict], loop: bool) -> dict:
        """A sub-DAG's output parameters; out of a ParallelFor, the list of every iteration's (dsl.Collected)."""
        out = {}
        for name, spec in component["dag"].get("outputs", {}).get("parameters", {}).items():
            src = spec["valueFromParameter"]
            values = [it[src["producerSubtask"]]["parameters"][src["outputParameterKey"]] for it in iterations]
            out[name] = values if loop else values[0]
        return {"parameters": out, "artifacts": {}}

    # ---- launcher -------------------------------------------------------------------------
    def _env(self, executor_label: str, run: PipelineRun, container: dict) -> dict[str, str]:
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        k8s = self.platform.get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {}).get(executor_label, {})
        for source in k8s.get("secretAsEnv", []) + k8s.get("configMapAsEnv", []):
            for pair in source.get("keyToEnv", []):
                var = pair["envVar"]
                if var in self.cluster_env:
                    env[var] = self.cluster_env[var]
                elif not source.get("optional", False):
                    raise KeyError(f"{executor_label} needs {var} from a Secret/ConfigMap; pass it in cluster_env")
        for item in k8s.get("fieldPathAsEnv", []):
            if item["fieldPath"] != RUN_ID_FIELD:
                raise NotImplementedError(f"fieldPathAsEnv {item['fieldPath']}")
            env[item["name"]] = run.run_id
        return env

    def _launch(self, name: str, component: dict, params: dict, arts: dict, run: PipelineRun) -> dict:
        self.counter += 1
        label = component["executorLabel"]
        container = self.spec["deploymentSpec"]["executors"][label]["container"]
        scratch = self.work / f"{self.counter:02d}-{name}"
        s3_dir, kfp_dir = scratch / "s3", scratch / "kfp"
        s3_dir.mkdir(parents=True)
        kfp_dir.mkdir(parents=True)
        # addDefaultParams: the component's own defaults for inputs the task does not set
        for pname, pdef in component.get("inputDefinitions", {}).get("parameters", {}).items():
            if pname not in params and "defaultValue" in pdef:
                params[pname] = pb_value(pdef["defaultValue"])
        task_root = f"{self.root}/{self.spec['pipelineInfo']['name']}/{run.run_id}/{name}/{uuid.uuid4()}"
        outputs_def = component.get("outputDefinitions", {})
        executor_input = {
            "inputs": {
                "parameterValues": params,
                "artifacts": {k: {"artifacts": [a]} for k, a in arts.items()},
            },
            "outputs": {
                "parameters": {
                    p: {"outputFile": f"{OUTPUT_PARAMETER_DIR}/{p}"} for p in outputs_def.get("parameters", {})
                },
                "artifacts": {
                    a: {"artifacts": [{"name": a, "uri": f"{task_root}/{a}", "type": d["artifactType"]}]}
                    for a, d in outputs_def.get("artifacts", {}).items()
                },
                "outputFile": f"{local_path_for_uri(task_root)}/output_metadata.json",
            },
        }
        # downloadArtifacts + prepareOutputFolders, on this pod's fresh /s3
        for art in arts.values():
            self.store.download(art["uri"], s3_dir / local_path_for_uri(art["uri"])[len("/s3/") :])
        for lst in executor_input["outputs"]["artifacts"].values():
            (s3_dir / local_path_for_uri(lst["artifacts"][0]["uri"])[len("/s3/") :]).parent.mkdir(
                parents=True, exist_ok=True
            )
        (kfp_dir / "outputs").mkdir()
        for path in [scratch, *scratch.rglob("*")]:
            os.chown(path, self.uid, self.uid)
        # compileCmdAndArgs
        payload = json.dumps(executor_input)
        argv = [part.replace("{{$}}", payload) for part in container["command"] + container.get("args", [])]
        leftover = [a for a in argv if re.search(r"\{\{\$\.", a)]
        if leftover:
            raise NotImplementedError(f"placeholders other than {{{{$}}}}: {leftover}")
        env = self._env(label, run, container)
        log = self.runner(argv, env, {s3_dir: "/s3", kfp_dir: "/tmp/kfp"}, self.timeout)
        # getExecutorOutputFile + collectOutputParameters + uploadOutputArtifacts
        out_file = s3_dir / executor_input["outputs"]["outputFile"][len("/s3/") :]
        executor_output = json.loads(out_file.read_text()) if out_file.exists() else {}
        values = dict(executor_output.get("parameterValues", {}))
        for pname, pdef in outputs_def.get("parameters", {}).items():
            if pname not in values:
                values[pname] = text_to_value((kfp_dir / "outputs" / pname).read_text(), pdef["parameterType"])
        values = pb_value(values)
        produced = {}
        for aname, lst in executor_input["outputs"]["artifacts"].items():
            art = dict(lst["artifacts"][0], metadata={})
            reported = executor_output.get("artifacts", {}).get(aname, {}).get("artifacts", [])
            if reported:
                art["uri"] = reported[0].get("uri") or art["uri"]
                art["metadata"].update(pb_value(reported[0].get("metadata") or {}))
            self.store.upload(s3_dir / local_path_for_uri(art["uri"])[len("/s3/") :], art["uri"])
            produced[aname] = art
        result = TaskResult(name, values, produced, executor_input, log)
        run.tasks.setdefault(name, []).append(result)
        shutil.rmtree(s3_dir)  # the pod's scratch volume goes with the pod
        return {"parameters": values, "artifacts": produced}
