"""Batch scoring (components/core/scoring): one row per file, each image scored once per model
version, unreadable files as rows with an error, labels joined later; locally and on S3 (moto)."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from components.core.scoring import batch as scoring
from components.core.scoring.run import score_prefix
from tests.support.drawn_images import drawn, png_bytes
from tests.support.s3 import upload_tree

pytest_plugins = ["tests.support.serving_fixtures"]


def make_inbox(demo_raw: Path, root: Path) -> dict[str, str]:
    """A day's prefix: the held-out SYNTHETIC lesions (by class), two unreadable files and
    three non-dermoscopy drawings. Returns {key: what it is}."""
    kinds = {}
    for cls in ("benign", "malignant"):
        for path in sorted((demo_raw / "test" / cls).glob("*.jpg")):
            key = f"clinic-a/{cls}-{path.name}"
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / key)
            kinds[key] = cls
    (root / "clinic-a/empty.jpg").write_bytes(b"")
    (root / "clinic-a/notes.jpg").write_bytes(b"not an image at all\n" * 20)
    kinds.update({"clinic-a/empty.jpg": "bad", "clinic-a/notes.jpg": "bad"})
    for name, pixels in list(drawn(size=64).items())[:3]:
        (root / f"other/{name}.png").parent.mkdir(parents=True, exist_ok=True)
        (root / f"other/{name}.png").write_bytes(png_bytes(pixels))
        kinds[f"other/{name}.png"] = "drawing"
    return kinds


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    from components.core.inference.predictor import Predictor

    return Predictor.load(str(tiny_model_dir))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_each_file_one_row_then_nothing_twice_then_only_new(
    where, predictor, tiny_model_dir, demo_raw, tmp_path, request
):
    inbox = tmp_path / "inbox"
    kinds = make_inbox(demo_raw, inbox)
    if where == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        data, out = upload_tree(inbox, bucket, "inbox"), f"s3://{bucket}/scored"
    else:
        data, out = str(inbox), str(tmp_path / "scored")

    summary, rows = score_prefix(data, out, str(tiny_model_dir), predictor=predictor, batch=8)
    assert sorted(r["key"] for r in rows) == sorted(kinds)
    by_key = {r["key"]: r for r in rows}
    for key, kind in kinds.items():
        row = by_key[key]
        assert (row["model_name"], row["model_version"]) == (predictor.model_name, predictor.model_version)
        if kind == "bad":
            assert row["error"] and row["p_malignant"] is None and row["decision"] is None
        else:
            assert row["error"] is None and 0.0 <= row["p_malignant"] <= 1.0
            assert row["decision"] in ("benign", "malignant", "refer") and row["label"] in ("benign", "malignant")
            assert (row["refer_reason"] is not None) == (row["decision"] == "refer")
    assert "empty file" in by_key["clinic-a/empty.jpg"]["error"]
    assert summary["errors"] == 2 and summary["scored"] == len(kinds) - 2 and summary["already_scored"] == 0
    assert summary["referred"] == sum(r["decision"] == "refer" for r in rows)
    # What was written is what was returned, one file for the run.
    assert len(scoring.prediction_files(out)) == 1
    written = scoring.read_rows(out, list(scoring.COLUMNS))
    assert sorted(r["key"] for r in written) == sorted(kinds)
    assert {r["key"]: r["p_malignant"] for r in written} == {k: r["p_malignant"] for k, r in by_key.items()}

    again, rows2 = score_prefix(data, out, str(tiny_model_dir), predictor=predictor, batch=8)
    assert rows2 == [] and again["scored"] == 0 and again["already_scored"] == len(kinds)
    assert again["predictions_uri"] is None and len(scoring.prediction_files(out)) == 1

    new = {"clinic-b/new-1.png": drawn(size=40, seed=5), "clinic-b/new-2.png": drawn(size=48, seed=6)}
    for key, images in new.items():
        (inbox / key).parent.mkdir(parents=True, exist_ok=True)
        (inbox / key).write_bytes(png_bytes(next(iter(images.values()))))
    if where == "s3":
        upload_tree(inbox / "clinic-b", bucket, "inbox/clinic-b")
    third, rows3 = score_prefix(data, out, str(tiny_model_dir), predictor=predictor, batch=8)
    assert sorted(r["key"] for r in rows3) == sorted(new)
    assert third["scored"] == 2 and third["already_scored"] == len(kinds)
    assert len(scoring.prediction_files(out)) == 2


def test_same_content_under_a_new_key_is_not_scored_again(predictor, demo_raw, tmp_path):
    inbox = tmp_path / "inbox"
    make_inbox(demo_raw, inbox)
    out = str(tmp_path / "scored")
    score_prefix(str(inbox), out, "unused", predictor=predictor)
    shutil.copy(inbox / "clinic-a/empty.jpg", inbox / "copy-of-empty.jpg")
    first = next(iter(sorted((inbox / "clinic-a").glob("benign-*.jpg"))))
    shutil.copy(first, inbox / "renamed.jpg")
    summary, rows = score_prefix(str(inbox), out, "unused", predictor=predictor)
    assert rows == [] and summary["scored"] == 0


def test_too_many_unreadable_files_fail_the_run_naming_them(predictor, demo_raw, tmp_path):
    inbox = tmp_path / "inbox"
    make_inbox(demo_raw, inbox)
    with pytest.raises(scoring.TooManyBadFiles, match=r"2 of \d+ files.*clinic-a/empty.jpg.*clinic-a/notes.jpg"):
        score_prefix(str(inbox), str(tmp_path / "scored"), "unused", predictor=predictor, max_bad_fraction=0.05)
    assert scoring.prediction_files(str(tmp_path / "scored")) == []


def test_labels_joined_later_give_the_figures_the_rows_imply(predictor, demo_raw, tmp_path):
    inbox = tmp_path / "inbox"
    kinds = make_inbox(demo_raw, inbox)
    out = str(tmp_path / "scored")
    _, rows = score_prefix(str(inbox), out, "unused", predictor=predictor)
    labels = tmp_path / "biopsies.csv"
    lesions = sorted(k for k, kind in kinds.items() if kind in ("benign", "malignant"))
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "label"])
        for i, key in enumerate(lesions[:-2]):  # two lesions' results have not arrived
            w.writerow([key, kinds[key] if i % 2 else {"benign": 0, "malignant": 1}[kinds[key]]])
    summary, _ = score_prefix(str(inbox), out, "unused", labels_uri=str(labels), predictor=predictor)
    got = summary["labels"]
    truth = {k: kinds[k] for k in lesions[:-2]}
    joined = [r for r in rows if r["key"] in truth]
    decided = [r for r in joined if r["decision"] != "refer"]
    malignant = [r for r in decided if truth[r["key"]] == "malignant"]
    assert got["labelled"] == len(truth) == len(joined)
    assert got["labelled_referred"] == len(joined) - len(decided)
    assert got["label_accuracy"] == pytest.approx(np.mean([r["label"] == truth[r["key"]] for r in joined]))
    truly_malignant = [r for r in joined if truth[r["key"]] == "malignant"]
    assert got["label_malignant_recall"] == pytest.approx(np.mean([r["label"] == "malignant" for r in truly_malignant]))
    assert "malignant_recall_floor" not in got  # the tiny model's run is not on a tracking server
    if decided:
        assert got["decided_accuracy"] == pytest.approx(np.mean([r["decision"] == truth[r["key"]] for r in decided]))
    if malignant:
        assert got["decided_malignant_recall"] == pytest.approx(
            np.mean([r["decision"] == "malignant" for r in malignant])
        )


def test_labels_csv_refuses_an_unknown_label(tmp_path):
    from components.core.scoring.labels import read_labels

    path = tmp_path / "l.csv"
    path.write_text("key,label\na.jpg,benign\nb.jpg,melanoma\n")
    with pytest.raises(ValueError, match="line 3"):
        read_labels(str(path))


def test_parquet_schema_has_the_issue_columns(tmp_path):
    import pyarrow.parquet as pq

    assert set(scoring.COLUMNS) <= set(scoring.schema().names)
    uri = scoring.write_rows([{c: None for c in scoring.schema().names} | {"key": "a"}], str(tmp_path), "r")
    assert pq.read_table(io.BytesIO(Path(uri).read_bytes())).column_names == scoring.schema().names
    assert scoring.write_rows([], str(tmp_path), "r2") is None


def test_worklist_lists_referred_then_malignant_with_thumbnails_and_the_verdicts(
    predictor, demo_raw, preprocessed, tmp_path
):
    from components.core.scoring import report

    inbox = tmp_path / "inbox"
    kinds = make_inbox(demo_raw, inbox)
    summary, rows = score_prefix(
        str(inbox), str(tmp_path / "scored"), "unused", predictor=predictor, reference_uri=str(preprocessed / "val")
    )
    assert [s["signal"] for s in summary["signals"]] == ["input", "prediction", "decision"]
    assert {s["verdict"] for s in summary["signals"]} <= {"drift", "no drift", "too few images to judge"}
    page = report.render(rows, summary, str(inbox))
    ordered = report.order(rows)
    rank = {"refer": 0, "malignant": 1, "benign": 2}
    assert [rank[r["decision"]] for r in ordered] == sorted(rank[r["decision"]] for r in ordered)
    positions = [page.index(r["key"]) for r in ordered]
    assert positions == sorted(positions)  # the page lists them in that order
    assert page.count("data:image/jpeg;base64,") == len(kinds) - 2  # a thumbnail per scored image
    assert "clinic-a/empty.jpg" in page and "empty file" in page
    for s in summary["signals"]:
        assert s["verdict"] in page


def test_output_inside_the_data_prefix_is_not_scored_whatever_its_spelling(predictor, demo_raw, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    kinds = make_inbox(demo_raw, inbox)
    monkeypatch.chdir(tmp_path)
    score_prefix("inbox", "./inbox/scored", "unused", predictor=predictor)
    summary, rows = score_prefix("./inbox", str(inbox / "scored"), "unused", predictor=predictor)
    assert rows == [] and summary["already_scored"] == len(kinds)  # no predictions file read as an image


def test_a_malignant_recall_below_the_model_cards_lower_bound_recommends_retraining():
    from components.core.evaluation.confidence import wilson
    from components.core.scoring.labels import recall_floor
    from components.core.scoring.run import summarise

    evaluation = {"test": {"confusion_matrix": [[50, 10], [8, 32]]}}
    floor = recall_floor(evaluation)
    assert floor == pytest.approx(wilson(32, 40)[0]) and 0.6 < floor < 0.8
    assert recall_floor({"test": {}}) is None and recall_floor(None) is None
    low = summarise([], 0, [], None, {"label_malignant_recall": floor - 0.01}, floor)
    assert low["retrain_recommended"] and low["retrain_reasons"][0].startswith(f"malignant recall {floor - 0.01:.3f}")
    assert summarise([], 0, [], None, {"label_malignant_recall": floor + 0.01}, floor)["retrain_recommended"] is False
