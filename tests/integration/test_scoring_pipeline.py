"""The scoring pipeline (pipelines/scoring_pipeline.py): compiled for a cluster against the same
backend rules as training (tests/support/ir_rules.py), and run under kfp.local against the S3 server on
127.0.0.1 and a real MLflow server: one row per file, nothing scored twice, only new images next."""

from __future__ import annotations

import json
import shutil

import pytest
from kfp import compiler

from pipelines import backend_compat
from pipelines.scoring_pipeline import PIPELINE_NAME, ScoringSettings, build_scoring_pipeline
from tests.integration.test_scoring import make_inbox
from tests.support import ir_rules
from tests.support.s3 import upload_tree

pytest_plugins = ["tests.support.serving_fixtures"]
TASKS = {"list-images", "score-shard", "report"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, dict]:
    path = tmp_path_factory.mktemp("scoring") / "scoring.yaml"
    compiler.Compiler().compile(
        build_scoring_pipeline(ScoringSettings(image="registry.example/skin-cancer:1")), str(path)
    )
    return backend_compat.load_compiled(str(path))


def test_compiles_and_passes_the_backend_rules(compiled):
    spec, platform = compiled
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    assert ir_rules.parameter_type_violations(spec) == []
    assert ir_rules.collected_output_violations(spec) == []
    assert ir_rules.kubernetes_reference_violations(spec, platform) == []
    assert ir_rules.per_run_cache_key_violations(spec) == []
    assert ir_rules.stateful_cache_violations(spec, TASKS) == []
    assert ir_rules.foreign_image_violations(spec) == []
    assert ir_rules.retry_in_loop_violations(spec) == []
    minimum = backend_compat.parse_version(backend_compat.MIN_BACKEND_VERSION)
    assert [
        f.name for f in backend_compat.features_used(spec, platform) if backend_compat.parse_version(f.since) > minimum
    ] == []


def test_shards_fan_out_as_structs_and_are_collected_for_the_report(compiled):
    spec, _ = compiled
    assert ("score-shard", "STRUCT", "STRUCT") in ir_rules.loop_item_consumers(spec)
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/skin-cancer:1"}
    report_outputs = spec["components"]["comp-report"]["outputDefinitions"]["artifacts"]
    assert report_outputs["worklist"]["artifactType"]["schemaTitle"] == "system.HTML"


SHARD_SIZE = 10  # two shards in the first run: the fan-out and the collection, at the fewest tasks


def _run(data: str, out: str, model: str, tracking_uri: str) -> dict:
    # No reference_uri: the reference stored with the model version is used.
    task = build_scoring_pipeline(ScoringSettings(retries=0, parallelism=2))(
        data_uri=data,
        out_uri=out,
        model_uri=model,
        shard_size=SHARD_SIZE,
        batch_size=8,
        mlflow_tracking_uri=tracking_uri,
        experiment_name="scoring-test",
    )
    return json.loads(task.output)


def test_under_kfp_local_with_s3_and_mlflow(kfp_local, s3_bucket, mlflow_server, tiny_model_dir, demo_raw, tmp_path):
    import mlflow

    from components.core.scoring import batch

    inbox = tmp_path / "inbox"
    kinds = make_inbox(demo_raw, inbox)
    data, out = upload_tree(inbox, s3_bucket, "inbox"), f"s3://{s3_bucket}/scored"
    args = (data, out, str(tiny_model_dir), mlflow_server)
    shards = -(-len(kinds) // SHARD_SIZE)
    assert shards >= 2

    first = _run(*args)
    rows = batch.read_rows(out, list(batch.COLUMNS))
    assert sorted(r["key"] for r in rows) == sorted(kinds)  # one row per file, over the shards
    assert first["scored"] == len(kinds) - 2 and first["errors"] == 2 and first["already_scored"] == 0
    assert first["referred"] == sum(r["decision"] == "refer" for r in rows)
    assert {s["signal"] for s in first["signals"]} == {"input", "prediction", "decision"}
    assert "no reference" not in {s["verdict"] for s in first["signals"]}  # the stored one
    assert set(first) >= {"drift_detected", "retrain_recommended", "predictions_uri"}
    assert len(first["predictions_uri"].split(",")) == len(batch.prediction_files(out)) == shards

    mlflow.set_tracking_uri(mlflow_server)
    logged = mlflow.get_run(first["mlflow_run_id"])
    assert logged.data.metrics["scored"] == first["scored"] and logged.data.params["model_uri"] == str(tiny_model_dir)
    assert logged.data.tags["stage"] == "score"
    (scored_input,) = logged.inputs.dataset_inputs  # the images it scored, as the run's input dataset
    assert scored_input.dataset.name.startswith("scoring-") and data in scored_input.dataset.source
    assert json.loads(scored_input.dataset.profile)["images"] == len(kinds)
    assert "scoring/worklist.html" in {
        a.path for a in mlflow.MlflowClient().list_artifacts(logged.info.run_id, "scoring")
    }
    again = _run(*args)
    assert again["scored"] == 0 and again["errors"] == 0 and again["already_scored"] == len(kinds)
    assert len(batch.prediction_files(out)) == shards

    new = tmp_path / "new"
    new.mkdir()
    first_lesion = sorted((demo_raw / "train" / "malignant").glob("*.jpg"))[:2]
    for path in first_lesion:
        shutil.copy(path, new / path.name)
    upload_tree(new, s3_bucket, "inbox/clinic-b")
    third = _run(*args)
    added = [r for r in batch.read_rows(out, list(batch.COLUMNS)) if r["key"].startswith("clinic-b/")]
    assert third["scored"] == 2 and third["already_scored"] == len(kinds) and len(added) == 2


def test_compile_command_writes_the_scoring_pipeline(tmp_path):
    from pipelines.cli import main

    out = tmp_path / "scoring.yaml"
    assert (
        main(["compile", "--pipeline", "scoring", "--image", "registry.example/skin-cancer:2", "--output", str(out)])
        == 0
    )
    spec, _ = backend_compat.load_compiled(str(out))
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {
        "registry.example/skin-cancer:2"
    }


def test_score_command_writes_the_summary_json(tiny_model_dir, demo_raw, tmp_path, monkeypatch):
    from pipelines.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the workdir's local store
    inbox = tmp_path / "inbox"
    kinds = make_inbox(demo_raw, inbox)
    summary_path = tmp_path / "summary.json"
    assert (
        main(
            [
                "score",
                "--data",
                str(inbox),
                "--out",
                str(tmp_path / "scored"),
                "--model-uri",
                str(tiny_model_dir),
                "--workdir",
                str(tmp_path / "work"),
                "--summary-json",
                str(summary_path),
            ]
        )
        == 0
    )
    summary = json.loads(summary_path.read_text())
    assert {
        "scored",
        "already_scored",
        "errors",
        "referred",
        "drift_detected",
        "retrain_recommended",
        "predictions_uri",
    } <= set(summary)
    assert summary["scored"] + summary["errors"] == len(kinds) and summary["errors"] == 2
    # The reference stored with the model is there; this batch is under the 30 images a verdict needs.
    assert summary["scored"] < 30
    assert [s["verdict"] for s in summary["signals"]] == ["too few images to judge"] * 3
    assert summary["drift_detected"] is False and summary["retrain_recommended"] is False
