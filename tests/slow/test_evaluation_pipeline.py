"""The whole pipeline under kfp.local with one tiny model: what the dashboard, MLflow and the
server show comes out of the real components (the train step's datasets from the preprocess
artifacts' URIs and metadata, the selection step's HTML and model card outputs, the card beside
the Model artifact and in the registered version's run, the lineage tags on the version)."""

import json
from pathlib import Path

import pytest

from components.core.data.dataset import SplitArrays
from components.core.registry import lineage
from components.core.reporting import model_card
from pipelines.training_pipeline import CompileSettings, build_pipeline

TINY = {"family": "basic", "name": "tiny", "width": 4, "augment": False, "early_stopping_patience": 0}


@pytest.mark.slow
def test_the_pipeline_leaves_figures_datasets_card_and_dashboard(kfp_local, demo_raw, mlflow_server, monkeypatch):
    import mlflow

    monkeypatch.setenv("KFP_RUN_ID", "kfp-run-evaluation")  # on a cluster: the pod's pipeline/runid label
    compile_settings = CompileSettings(parallelism=1, retries=0)
    name = "evaluation-pipeline-model"
    summary = json.loads(
        build_pipeline(compile_settings)(
            data_uri=str(demo_raw),
            models=[TINY],
            image_size=32,
            epochs=1,
            batch_size=16,
            seed=1,
            val_fraction=0.25,
            mlflow_tracking_uri=mlflow_server,
            experiment_name="test-evaluation-pipeline",
            registered_model_name=name,
        ).output
    )
    root = kfp_local / "pipeline-root"
    client = mlflow.MlflowClient(mlflow_server)
    version = client.get_model_version(name, summary["registered_model"]["version"])
    run = client.get_run(version.run_id)

    # The selection step's outputs: the dashboard's HTML and the card.
    page = next(root.rglob("select-and-register/dashboard")).read_text(encoding="utf-8")
    card = next(root.rglob("select-and-register/model_card")).read_text(encoding="utf-8")
    assert card.startswith(f"# Model card: {name} version {version.version}\n")
    assert 'id="compare-val"' in page and "No curves for" not in page and "tiny (winner)" in page
    # The same card beside the Model artifact (what KServe copies) and in the version's run.
    beside = next(root.rglob("train/model/model_card.md")).read_text(encoding="utf-8")
    assert beside == card
    mlflow.set_tracking_uri(mlflow_server)
    assert model_card.find(f"models:/{name}/{version.version}", name, version.version) == card

    # The training run's datasets: the raw folder (from the preprocess artifacts' metadata) with
    # the data fingerprint, and each split at its KFP artifact's URI with its own digest.
    inputs = {i.dataset.name: i.dataset for i in run.inputs.dataset_inputs}
    assert inputs["skin-cancer-raw"].digest == summary["data_fingerprint"]
    assert json.loads(inputs["skin-cancer-raw"].source) == {"uri": str(demo_raw)}
    for split in ("train", "val", "test"):
        folder = next(root.rglob(f"preprocess/{split}_data"))
        assert json.loads(inputs[f"skin-cancer-{split}"].source) == {"uri": str(folder)}
        assert inputs[f"skin-cancer-{split}"].digest == lineage.split_digest(SplitArrays(str(folder)).manifest)
    figures = [a.path for a in client.list_artifacts(run.info.run_id, "figures")]
    assert len(figures) == 10 and "figures/risk_coverage.png" in figures, figures  # the 10th: referral's

    # The registered version names its data, the KFP run and the images the pipeline runs.
    tags = version.tags
    assert tags["pipeline_run"] == "kfp-run-evaluation" and tags["data_uri"] == str(demo_raw)
    assert (
        tags["images"]
        == compile_settings.image_refs()
        == (f"runtime={compile_settings.image},train={compile_settings.train_image}")
    )
    assert tags["dataset_val"].endswith(f"(digest {inputs['skin-cancer-val'].digest})")
    assert tags["model_card"] == f"runs:/{run.info.run_id}/model_card.md"
    assert Path(client.download_artifacts(run.info.run_id, "selection/dashboard.html")).read_text() == page
