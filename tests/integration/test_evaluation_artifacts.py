"""What people look at, opened the way they would open it: a training run's figures, datasets and
linked metrics on a real MLflow server, the model card, and the selection step's dashboard page
rendered in Chromium.

No TensorFlow here (the default tier stays fast): the run is logged by the real
``tracking.training_run`` around a stand-in result (seeded scores on the fixture's splits) and a
stand-in logged model. Training, registration and the KFP outputs together run in
tests/slow/test_evaluation_pipeline.py (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from components.core.data.dataset import open_splits
from components.core.evaluation import confidence
from components.core.evaluation.metrics import choose_threshold, classification_metrics
from components.core.modeling.train_config import TrainConfig
from components.core.registry import lineage, tracking, versions
from components.core.reporting import model_card
from components.core.step_results import TrainSummary
from components.core.steps import select as select_step
from components.core.steps import train as train_step
from tests.support.image_checks import assert_not_blank, assert_sensible

SECRET = "hunter2-not-for-mlflow"
DATA_URI = f"https://reader:{SECRET}@data.example.org/raw"
URIS = {
    "train": "s3://pipeline-root/run-1/preprocess/train_data",
    "val": "s3://pipeline-root/run-1/preprocess/val_data",
    "test": "minio://mlpipeline/run-1/preprocess/test_data",
}  # KFP's own store: no MLflow source for it
IMAGES = "runtime=registry.example/skin-cancer:1.2,train=registry.example/skin-cancer-gpu:1.2"
EXPERIMENT = "test-evaluation-artifacts"


def stand_in_result(val, test, seed: int, name: str):
    """What train_model returns, from seeded scores that depend on the label (an imperfect model)."""
    rng = np.random.default_rng(seed)
    p_val = np.clip(0.3 * val.labels + 0.7 * rng.random(len(val)), 0, 1)
    p_test = np.clip(0.3 * test.labels + 0.7 * rng.random(len(test)), 0, 1)
    threshold = choose_threshold(val.labels, p_val)
    history = {
        "loss": [0.69, 0.6, 0.52],
        "val_loss": [0.7, 0.65, 0.61],
        "accuracy": [0.5, 0.62, 0.7],
        "val_accuracy": [0.5, 0.58, 0.64],
        "auc": [0.5, 0.7, 0.78],
        "val_auc": [0.5, 0.66, 0.72],
    }
    return SimpleNamespace(
        model=None,
        threshold=threshold,
        history=history,
        fold_scores=[],
        seconds=1.5,
        params=1234,
        val_scores=p_val,
        test_scores=p_test,
        temperature=1.0,
        val=classification_metrics(val.labels, p_val, threshold),
        test=classification_metrics(test.labels, p_test, threshold),
        name=name,
        policy=None,
        referral={},
    )  # no decision policy: tests/unit/test_decision.py has its own


def stand_in_log_model(model, threshold, image_size, family, decision=None):
    """A logged model without a model: the run's metrics still link to a real model id."""
    import mlflow

    logged = mlflow.initialize_logged_model(name="model", source_run_id=mlflow.active_run().info.run_id)
    return SimpleNamespace(model_id=logged.model_id, model_uri=f"models:/{logged.model_id}")


@pytest.fixture(scope="module")
def splits(preprocessed):
    return open_splits(*(str(preprocessed / s) for s in ("train", "val", "test")))


@pytest.fixture(scope="module")
def logged(mlflow_server, splits):
    """One training run logged by tracking.training_run (figures, datasets, scores), and a
    second model's run holding only its scores (for the dashboard's comparison)."""
    import mlflow

    train, val, test = splits
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KFP_RUN_ID", "kfp-run-under-test")
        mp.setattr(tracking, "log_model", stand_in_log_model)
        experiment = tracking.setup(mlflow_server, EXPERIMENT)
        described = lineage.describe(
            DATA_URI,
            train.manifest["fingerprint"],
            URIS,
            {"train": train.manifest, "val": val.manifest, "test": test.manifest},
            IMAGES,
        )
        result = stand_in_result(val, test, seed=1, name="basic")
        cfg = TrainConfig(family="basic", image_size=val.image_size)
        with tracking.training_run(cfg, "basic", experiment, lineage.version_tags(described)) as training:
            training.datasets = lineage.log_inputs(described)
            run = training.log_result(
                result,
                train.manifest["sources"],
                train_step.evaluation_pngs("basic", result, val.labels, test.labels),
            )
        other = stand_in_result(val, test, seed=2, name="narrow")
        with mlflow.start_run(experiment_id=experiment, run_name="narrow") as narrow:
            tracking.log_json(
                {"threshold": other.threshold, "val": other.val_scores.tolist(), "test": other.test_scores.tolist()},
                tracking.SCORES_ARTIFACT,
            )
    client = mlflow.MlflowClient(mlflow_server)
    return SimpleNamespace(
        client=client,
        run=run,
        result=result,
        described=described,
        other=other,
        other_run_id=narrow.info.run_id,
        model_id=run.model_uri.split("/")[-1],
    )


def as_summary(result, run_id, described=None, figures=(), artifact_uri=""):
    """A training result as run_train returns it to the selection step."""
    return TrainSummary(
        name=result.name,
        family="basic",
        run_id=run_id,
        model_uri=f"runs:/{run_id}/model",
        threshold=result.threshold,
        val=result.val,
        test=result.test,
        params=result.params,
        seconds=result.seconds,
        config=TrainConfig(min_sensitivity=0.85),
        lineage=described or {},
        figures=list(figures),
        artifact_uri=artifact_uri,
    )


@pytest.fixture(scope="module")
def selection(logged, splits, tmp_path_factory):
    """The selection step's report (select_step.selection_report) for a version that stayed
    @challenger: figures, card and page logged to MLflow, the card beside the Model artifact."""
    _, val, test = splits
    model_dir = tmp_path_factory.mktemp("model-artifact")
    winner = as_summary(logged.result, logged.run.run_id, logged.described, logged.run.figures, str(model_dir))
    results = [winner, as_summary(logged.other, logged.other_run_id)]
    previous = {
        "version": "2",
        "val": logged.result.val,
        "test": logged.result.test,
        "threshold": 0.5,
        "comparison": {
            "compared_on": 12,
            "validation_images": len(val),
            "champion_training_set": "recorded",
            "decided": True,
            "mine": {"accuracy": 0.6, "auc": 0.7},
            "theirs": {"accuracy": 0.7, "auc": 0.8},
        },
    }
    reg = versions.Registration("card-test-model", "3", "models:/card-test-model/3", "challenger", False, "2", previous)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KFP_RUN_ID", "kfp-run-under-test")
        card, page, problem = select_step.selection_report(results, winner, reg, val, test)
    return SimpleNamespace(winner=winner, reg=reg, card=card, page=page, problem=problem, model_dir=model_dir)


# --- the training run in MLflow -----------------------------------------------------------------------


def test_figures_are_logged_under_figures_and_open_as_pictures(logged, tmp_path):
    client, run_id = logged.client, logged.run.run_id
    listed = sorted(a.path for a in client.list_artifacts(run_id, tracking.FIGURES_DIR))
    kinds = ("roc", "pr", "confusion", "calibration")
    expected = sorted(
        [f"figures/{s}_{k}.png" for s in ("val", "test") for k in kinds] + ["figures/training_curves.png"]
    )
    assert listed == expected == logged.run.figures
    local = Path(client.download_artifacts(run_id, tracking.FIGURES_DIR, str(tmp_path)))
    for path in sorted(local.glob("*.png")):
        assert_sensible(path.read_bytes(), min_size=(300, 250), max_size=(900, 500))


def test_datasets_name_their_source_and_digest_without_credentials(logged, splits):
    run = logged.client.get_run(logged.run.run_id)
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["skin-cancer-raw", "skin-cancer-test", "skin-cancer-train", "skin-cancer-val"]
    fingerprint = splits[0].manifest["fingerprint"]
    raw = inputs["skin-cancer-raw"]
    assert raw.dataset.digest == fingerprint
    assert json.loads(raw.dataset.source) == {"url": "https://data.example.org/raw"}
    assert {t.key: t.value for t in raw.tags}["mlflow.data.context"] == "source"
    for split, context, source_type in (
        ("train", "training", "s3"),
        ("val", "validation", "s3"),
        ("test", "test", "uri"),
    ):
        entry = inputs[f"skin-cancer-{split}"]
        manifest = splits[("train", "val", "test").index(split)].manifest
        assert entry.dataset.digest == lineage.split_digest(manifest)
        assert (json.loads(entry.dataset.source), entry.dataset.source_type) == ({"uri": URIS[split]}, source_type)
        assert {t.key: t.value for t in entry.tags}["mlflow.data.context"] == context
        profile = json.loads(entry.dataset.profile)
        assert profile["data_fingerprint"] == fingerprint and profile["images"] == manifest["count"]
        assert {c: profile[c] for c in ("benign", "malignant")} == manifest["class_counts"]
        assert "mlflow_tensorspec" in entry.dataset.schema
    tags = run.data.tags
    assert tags["images"] == IMAGES and tags["data_uri"] == "https://data.example.org/raw"
    assert tags["dataset_val"] == f"{URIS['val']} (digest {lineage.split_digest(splits[1].manifest)})"
    everything = json.dumps([run.data.tags, run.data.params, [i.dataset.to_dictionary() for i in inputs.values()]])
    assert SECRET not in everything and "reader" not in everything


def test_metrics_are_linked_to_the_logged_model_and_their_dataset(logged, splits):
    import mlflow

    model = mlflow.MlflowClient(logged.client.tracking_uri).get_logged_model(logged.model_id)
    linked = {(m.key, m.dataset_name) for m in model.metrics}
    assert {("val_accuracy", "skin-cancer-val"), ("test_auc", "skin-cancer-test")} <= linked
    assert model.tags["images"] == IMAGES and model.tags["data_uri"] == "https://data.example.org/raw"
    # The run's table shows the final metric at the chosen threshold, not Keras' last epoch at 0.5.
    metrics = logged.client.get_run(logged.run.run_id).data.metrics
    assert metrics["val_accuracy"] == pytest.approx(logged.result.val["accuracy"])
    assert tracking.load_scores(logged.run.run_id)["val"] == pytest.approx(logged.result.val_scores.tolist(), abs=1e-6)


# --- the model card and the dashboard -------------------------------------------------------------


def test_the_card_names_the_version_its_figures_data_and_intervals(selection, logged, splits):
    card = selection.card
    assert card.startswith("# Model card: card-test-model version 3\n")
    assert "not a diagnosis" in card and "Dermoscopic images only" in card
    # Every figure it names is in the run's artifacts: the training run's and the selection's.
    named = [line.strip("- `") for line in card.splitlines() if line.startswith("- `") and line.endswith(".png`")]
    run_id = logged.run.run_id
    stored = {a.path for d in ("figures", "selection") for a in logged.client.list_artifacts(run_id, d)}
    assert named == [*logged.run.figures, "selection/compare_test.png", "selection/compare_val.png"]
    assert set(named) <= stored
    train, val, test = splits
    counts = train.manifest["class_counts"]
    assert (
        f"| train | {counts['benign']} | {counts['malignant']} | {train.manifest['count']} | "
        f"`skin-cancer-train` ({lineage.split_digest(train.manifest)}) |"
    ) in card
    low, high = confidence.intervals(logged.result.val)["accuracy"]
    assert f"| accuracy | {logged.result.val['accuracy']:.3f} ({low:.3f}-{high:.3f}) |" in card
    assert f"Threshold **{logged.result.threshold:.4f}**" in card and "0.85 plus one standard error" in card
    assert "Champion version 2 stayed and version 3 is @challenger" in card
    assert "accuracy 0.700 (champion) vs 0.600 (new)" in card
    assert "https://data.example.org/raw" in card and SECRET not in card
    assert f"Images: {IMAGES}." in card and "KFP run: `kfp-run-under-test`." in card


def test_the_card_is_kept_in_mlflow_and_beside_the_model(selection, logged, tmp_path):
    stored = logged.client.download_artifacts(logged.run.run_id, model_card.CARD_FILE, str(tmp_path))
    assert Path(stored).read_text(encoding="utf-8") == selection.card
    assert selection.problem is None
    assert (selection.model_dir / model_card.CARD_FILE).read_text(encoding="utf-8") == selection.card
    assert model_card.find(str(selection.model_dir)) == selection.card
    assert model_card.find(str(tmp_path / "no-such-model")) is None
    assert model_card.find(f"runs:/{logged.run.run_id}/model") == selection.card  # MLflow, by the run
    page = logged.client.download_artifacts(logged.run.run_id, "selection/dashboard.html", str(tmp_path))
    assert Path(page).read_text(encoding="utf-8") == selection.page


def test_the_dashboard_is_self_contained(selection):
    page = selection.page
    assert "<script" not in page.lower() and 'src="http' not in page and 'href="http' not in page
    assert page.count('src="data:image/png;base64,') == 2 and "No curves for" not in page
    assert "basic (winner)" in page and "narrow" in page and "@challenger" in page
    assert SECRET not in page


def test_the_dashboard_renders_in_chromium_with_its_curves(browser, selection, tmp_path):
    from PIL import Image

    path = tmp_path / "dashboard.html"
    path.write_text(selection.page, encoding="utf-8")
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors, requests = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    sizes = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert [s[0] for s in sizes] == ["compare-val", "compare-test"]
    assert all(done and width >= 700 and height >= 300 for _, done, width, height in sizes), sizes
    assert f"{selection.winner.threshold:.4f}" == page.inner_text("#threshold")
    assert "stayed" in page.inner_text("#why")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    context.close()
    assert not errors
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing fetched from elsewhere
    rgb = np.asarray(Image.open(shot).convert("RGB"))
    assert rgb.shape[0] > 900  # the whole page: the curves and the card below the table
    assert_not_blank(rgb, max_ink=0.9)
    # The curves are drawn: the screenshot holds the models' line colours (matplotlib's first two).
    from tests.support.image_checks import count_near

    assert count_near(rgb, np.array([0x1F, 0x77, 0xB4])) > 500 and count_near(rgb, np.array([0xFF, 0x7F, 0x0E])) > 500


def test_images_are_recorded_only_for_a_cluster_run(monkeypatch):
    """Under kfp.local the tasks run in the local Python environment: no image is claimed."""
    monkeypatch.delenv("KFP_RUN_ID", raising=False)
    assert lineage.pipeline_images(IMAGES) == ""
    assert lineage.version_tags({"images": "", "datasets": {}})["images"].startswith("none recorded: a kfp.local run")
    monkeypatch.setenv("KFP_RUN_ID", "run-7")
    assert lineage.pipeline_images(IMAGES) == IMAGES
