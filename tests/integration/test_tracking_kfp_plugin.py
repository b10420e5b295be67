"""Our MLflow runs under KFP 2.17's MLflow plugin, against a real `mlflow server` on 127.0.0.1.

The plugin (kubeflow/pipelines backend/src/v2/common/plugins/mlflow/handler.go), when enabled,
creates one MLflow run per task in the KFP run's experiment, tagged ``mlflow.parentRunId`` = the
KFP run's own MLflow run (OnTaskStart, CreateRun), injects ``MLFLOW_RUN_ID`` (that task run),
``MLFLOW_EXPERIMENT_ID`` and ``MLFLOW_TRACKING_URI`` into the task's container
(RetrieveUserContainerEnvVars), and ends the task run itself (OnTaskEnd, UpdateRun). These tests
build exactly that on the server, set the variables the way the plugin does, and run our stages.
"""

from __future__ import annotations

import logging
import os
import uuid
from types import SimpleNamespace

import pytest

from components.core.data.dataset import open_splits
from components.core.modeling.training import TrainConfig
from components.core.registry import tracking
from components.core.steps import preprocess as preprocess_step

PARENT_TAG = "mlflow.parentRunId"


@pytest.fixture
def plugin(mlflow_server, monkeypatch):
    """KFP's run and task run as the plugin makes them, and the task's environment."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    kfp_experiment = client.create_experiment(f"kfp-experiment-{uuid.uuid4().hex[:8]}")
    kfp_run = client.create_run(kfp_experiment, run_name="skin-cancer-training 2026-12-03").info.run_id
    task_run = client.create_run(kfp_experiment, run_name="preprocess", tags={PARENT_TAG: kfp_run}).info.run_id
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_RUN_ID", task_run)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", kfp_experiment)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("KFP_RUN_ID", "kfp-run-plugin")
    return SimpleNamespace(client=client, experiment=kfp_experiment, kfp_run=kfp_run, task_run=task_run)


def _untouched(plugin) -> None:
    """KFP's task run is KFP's: we neither resumed, renamed, logged to nor ended it."""
    task = plugin.client.get_run(plugin.task_run)
    assert task.info.status == "RUNNING" and task.info.run_name == "preprocess"
    assert task.data.params == {} and task.data.metrics == {}
    assert task.data.tags[PARENT_TAG] == plugin.kfp_run


def test_without_holding_the_variable_back_mlflow_resumes_kfps_run(plugin):
    """Why tracking.start_run exists: the plain call takes over KFP's run and its experiment."""
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    ours = plugin.client.create_experiment(f"ours-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=ours) as run:
        assert run.info.run_id == plugin.task_run and run.info.experiment_id == plugin.experiment


def test_preprocessing_nests_under_kfps_task_run_in_our_experiment(plugin, demo_raw, tmp_path):
    experiment = f"skin-cancer-{uuid.uuid4().hex[:8]}"
    artifacts = {s: SimpleNamespace(path=str(tmp_path / s), metadata={}) for s in ("train", "val", "test")}
    out = preprocess_step.run_preprocess(str(demo_raw), 32, 0.25, 1, 0.01, "", experiment, artifacts)

    ours = plugin.client.get_experiment_by_name(experiment)
    runs = plugin.client.search_runs([ours.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == f"preprocess-{out.fingerprint}"
    assert run.data.tags[PARENT_TAG] == plugin.task_run
    assert run.data.tags["stage"] == "preprocess" and run.data.params["image_size"] == "32"
    assert run.info.status == "FINISHED"
    # Found from KFP's side: the task run's children.
    children = plugin.client.search_runs([ours.experiment_id], f"tags.`{PARENT_TAG}` = '{plugin.task_run}'")
    assert [r.info.run_id for r in children] == [run.info.run_id]
    _untouched(plugin)
    assert len(plugin.client.search_runs([plugin.experiment])) == 2  # KFP's run and task run, nothing of ours


def test_a_training_run_nests_under_kfps_task_run(plugin, preprocessed, monkeypatch):
    from tests.integration.test_evaluation_artifacts import stand_in_log_model, stand_in_result

    monkeypatch.setattr(tracking, "log_model", stand_in_log_model)
    _, val, test = open_splits(*(str(preprocessed / s) for s in ("train", "val", "test")))
    experiment = tracking.setup("", f"skin-cancer-{uuid.uuid4().hex[:8]}")
    result = stand_in_result(val, test, seed=1, name="basic")
    with tracking.training_run(
        TrainConfig(family="basic", image_size=val.image_size), "basic", experiment, {"data_fingerprint": "f"}
    ) as training:
        logged = training.log_result(result)
    run = plugin.client.get_run(logged.run_id)
    assert run.info.experiment_id == experiment and run.info.run_name == "basic"
    assert run.data.tags[PARENT_TAG] == plugin.task_run
    assert run.data.tags["pipeline_run"] == "kfp-run-plugin"
    _untouched(plugin)


def test_a_kfp_run_our_server_does_not_know_is_not_a_parent(plugin, caplog, monkeypatch):
    """The plugin may log to another MLflow server than the pipeline's: then no nesting, no failure."""
    import mlflow

    unknown = uuid.uuid4().hex
    monkeypatch.setenv("MLFLOW_RUN_ID", unknown)
    experiment = tracking.setup("", f"skin-cancer-{uuid.uuid4().hex[:8]}")
    with caplog.at_level(logging.WARNING, logger=tracking.__name__):
        with tracking.start_run(experiment, "basic") as run:
            mlflow.log_param("x", 1)
    got = plugin.client.get_run(run.info.run_id)
    assert got.info.experiment_id == experiment and PARENT_TAG not in got.data.tags
    assert f"MLFLOW_RUN_ID {unknown}" in caplog.text and "not nesting" in caplog.text


def test_without_the_plugin_runs_are_top_level(mlflow_server, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    experiment = tracking.setup(mlflow_server, f"skin-cancer-{uuid.uuid4().hex[:8]}")
    with tracking.start_run(experiment, "basic") as run:
        pass
    got = mlflow.MlflowClient(mlflow_server).get_run(run.info.run_id)
    assert got.info.experiment_id == experiment and PARENT_TAG not in got.data.tags
