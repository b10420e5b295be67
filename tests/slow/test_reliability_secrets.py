"""Secrets: plant fake credentials, run the stages (tiny), compile, provoke errors, then grep
every output for the values: logs, stdout/stderr, compiled YAML, MLflow params, tags,
metrics and artifacts, KFP artifact metadata and files, and error messages."""

from __future__ import annotations

import base64
import json
import logging
import os
import traceback
import urllib.parse
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from components.core.data import storage
from components.core.registry import tracking
from tests.support.faults import FaultProxy, always
from tests.support.processes import free_port
from tests.support.reliability_support import write_raw
from tests.support.s3 import upload_tree


class FakeArtifact(SimpleNamespace):
    def log_metric(self, key, value):
        self.metadata[key] = value

    def log_confusion_matrix(self, *args):
        self.metadata["confusion_matrix"] = args

    def log_roc_curve(self, *args):
        self.metadata["roc"] = args


def _artifact(path: Path) -> FakeArtifact:
    return FakeArtifact(path=str(path), uri=str(path), metadata={})


def _mlflow_texts(server: str, experiment: str) -> list[str]:
    """Everything MLflow keeps about the experiment's runs and registered models, as text."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(server)
    exp = client.get_experiment_by_name(experiment)
    texts = [json.dumps(dict(exp.tags)), exp.artifact_location]
    for run in client.search_runs([exp.experiment_id]):
        texts += [
            json.dumps(run.data.params),
            json.dumps(run.data.tags),
            json.dumps(run.data.metrics),
            run.info.artifact_uri or "",
        ]
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, tracking_uri=server)
        for f in Path(local).rglob("*"):
            if f.is_file() and f.suffix in ("", ".json", ".yaml", ".txt", ".md", ".keras_metadata", ".py"):
                texts.append(f.read_text(errors="replace"))
    for model in client.search_registered_models():
        texts += [model.name, model.description or "", json.dumps(model.tags)]
        for v in client.search_model_versions(f"name='{model.name}'"):
            texts += [json.dumps(v.tags), v.source or "", v.description or ""]
    return texts


@pytest.mark.slow
def test_no_credential_value_reaches_any_output(tmp_path, s3_bucket, mlflow_server, monkeypatch, capfd, caplog):
    from kfp import compiler

    from components.core.steps import preprocess as preprocess_step
    from components.core.steps import select as select_step
    from components.core.steps import train as train_step
    from pipelines.cli import main
    from pipelines.training_pipeline import build_pipeline

    tag = uuid.uuid4().hex[:10]
    secrets = {
        "AWS_SECRET_ACCESS_KEY": f"FAKEawsSECRET{tag}",
        "AWS_SESSION_TOKEN": f"FAKEawsTOKEN{tag}",
        "MLFLOW_TRACKING_PASSWORD": f"FAKEenvPASSWORD{tag}",
        "MLFLOW_TRACKING_TOKEN": f"FAKEbearerTOKEN{tag}",
    }
    uri_password = f"FAKEuriPASSWORD{tag}"
    port = urllib.parse.urlsplit(mlflow_server).port
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "leak-user")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://leak-user:{uri_password}@127.0.0.1:{port}")
    storage._s3_client.cache_clear()
    caplog.set_level(logging.INFO)  # what the components run at

    outputs: list[str] = []
    raw = upload_tree(write_raw(tmp_path / "raw", train=10, test=4, size=32), s3_bucket, "raw")
    experiment, name = f"secrets-{tag}", f"secrets-model-{tag}"

    # The three stages, tiny, with the tracking URI from the environment (as on a cluster).
    art = {s: _artifact(tmp_path / "pre" / s) for s in ("train", "val", "test")}
    pre = preprocess_step.run_preprocess(raw, 32, 0.25, 42, 0.01, "", experiment, art)
    model_art, metrics_art, roc_art = (_artifact(tmp_path / n) for n in ("model", "metrics", "roc"))
    result = train_step.run_train(
        {"family": "basic", "width": 4, "augment": False, "early_stopping_patience": 0, "extra": {"blocks": 1}},
        art["train"].path,
        art["val"].path,
        art["test"].path,
        {"epochs": 1, "batch_size": 16, "learning_rate": 0.01, "image_size": 32, "seed": 1},
        "",
        experiment,
        pre.fingerprint,
        model_art,
        metrics_art,
        roc_art,
    )
    reg = select_step.run_select_and_register(
        [result], art["val"].path, art["test"].path, "", experiment, name, pre.fingerprint, str(tmp_path / "summary.md")
    )
    outputs += [pre.report, result, reg.summary_json, (tmp_path / "summary.md").read_text()]
    outputs += [json.dumps(a.metadata, default=str) for a in (*art.values(), model_art, metrics_art)]
    outputs += [f.read_text(errors="replace") for f in (tmp_path / "model").glob("*.json")]

    # The compiled pipeline, with the credentials in the compiling shell's environment.
    yaml_path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(), package_path=str(yaml_path))
    outputs.append(yaml_path.read_text())

    # Error messages, with their whole tracebacks (chained causes included).
    def failure(fn) -> str:
        with pytest.raises(Exception) as info:
            fn()
        return "".join(traceback.format_exception(info.value))

    outputs.append(failure(lambda: storage.list_objects("s3://no-such-bucket-secrets/x")))
    outputs.append(failure(lambda: tracking.setup(f"http://leak-user:{uri_password}@127.0.0.1:{free_port()}", "x")))
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"], always("deny")) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        storage._s3_client.cache_clear()
        outputs.append(failure(lambda: storage.read_bytes(f"{raw}/train/benign/0000.jpg")))
        assert main(["preprocess", "--data", raw, "--out", str(tmp_path / "cli")]) == 2
    storage._s3_client.cache_clear()

    outputs += _mlflow_texts(mlflow_server, experiment)
    captured = capfd.readouterr()
    outputs += [captured.out, captured.err, caplog.text]
    assert "View run" in captured.out  # MLflow printed its run links: the grep saw real output

    haystack = "\n".join(outputs)
    needles = {**secrets, "uri password": uri_password}
    for user_pass in (f"leak-user:{secrets['MLFLOW_TRACKING_PASSWORD']}", f"leak-user:{uri_password}"):
        needles[f"basic auth of {user_pass}"] = base64.b64encode(user_pass.encode()).decode()
    leaks = {
        what: value for what, value in needles.items() if value in haystack or urllib.parse.quote(value) in haystack
    }
    assert not leaks, f"credential values leaked: {sorted(leaks)}"
    assert f"127.0.0.1:{port}" in haystack  # the bare URI may appear; only the secret part may not
