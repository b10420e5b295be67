"""What averaging the fan-out's models would give, from what their training runs stored: no model
is loaded, no image scored again.

    .venv/bin/python -m benchmarks.ensemble_scores --run WORKDIR [--run WORKDIR ...]

Each WORKDIR is a finished `skin-cancer run` on the same data with the same seed and image size
(so its validation and test splits are the same images in the same order: checked). For each run's
registered model and for the average of their calibrated p(malignant), on the test split: AUC,
accuracy at the threshold chosen on validation (the train step's rule), Brier score, and the
conformal referral at the default level fitted on validation (refer rate, accuracy and malignant
recall of the decided images, per-class coverage). Out-of-scope referral is left out: it does not
depend on the classifier. The figures are in docs/model-quality.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from components.core import settings


def _splits(workdir: Path) -> dict[str, tuple[np.ndarray, list[str]]]:
    """(labels, content hashes) of the validation and test splits the run preprocessed."""
    out = {}
    for split in ("val", "test"):
        (folder,) = sorted(Path(workdir, "pipeline-root").glob(f"*/preprocess/{split}_data"))
        manifest = json.loads((folder / "manifest.json").read_text())
        out[split] = (np.load(folder / "labels.npy", allow_pickle=False), [s["sha1"] for s in manifest["sources"]])
    return out


def _scores(workdir: Path, model_name: str) -> tuple[str, dict, float]:
    """(model name, stored scores by split, min_sensitivity) of version 1 of ``model_name`` in the run's registry."""
    import mlflow

    from components.core.registry import tracking

    mlflow.set_tracking_uri(tracking.local_tracking_uri(str(workdir)))
    client = mlflow.MlflowClient()
    version = client.get_model_version(model_name, "1")
    run = client.get_run(version.run_id)
    scores = tracking.load_scores(version.run_id)
    return run.data.tags.get("model_name", version.run_id), scores, float(run.data.params.get("min_sensitivity", 0.85))


def evaluate(val_labels, p_val, test_labels, p_test, min_sensitivity: float, level: float) -> dict[str, float]:
    from components.core.decision import conformal
    from components.core.evaluation.metrics import choose_threshold, classification_metrics

    threshold = choose_threshold(val_labels, p_val, min_sensitivity)
    test = classification_metrics(test_labels, p_test, threshold)
    sets = conformal.fit(val_labels, p_val, level)
    label = (p_test >= threshold).astype(int)
    benign_in, malignant_in = p_test <= sets["benign_max_p"], p_test >= sets["malignant_min_p"]
    decided = np.where(label == 1, malignant_in & ~benign_in, benign_in & ~malignant_in)
    right = (label == test_labels) & decided
    val = classification_metrics(val_labels, p_val, threshold)
    return {
        "val_accuracy": val["accuracy"],  # what selection ranks by (registry/selection.py)
        "val_auc": val["auc"],
        "test_auc": test["auc"],
        "test_accuracy": test["accuracy"],
        "test_brier": test["brier"],
        "refer_rate": float(1 - decided.mean()),
        "decided_accuracy": float(right[decided].mean()),
        "decided_malignant_recall": float(
            right[decided & (test_labels == 1)].sum() / (decided & (test_labels == 1)).sum()
        ),
        "coverage_benign": float(benign_in[test_labels == 0].mean()),
        "coverage_malignant": float(malignant_in[test_labels == 1].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, type=Path, help="a `skin-cancer run` workdir")
    ap.add_argument("--model-name", default=settings.REGISTERED_MODEL_NAME)
    ap.add_argument("--level", type=float, default=settings.REFER_COVERAGE)
    args = ap.parse_args(argv)
    splits = [_splits(w) for w in args.run]
    for other in splits[1:]:
        for split in ("val", "test"):
            if other[split][1] != splits[0][split][1]:
                raise SystemExit(f"the runs' {split} splits differ: same data, seed and image size needed")
    (val_labels, _), (test_labels, _) = splits[0]["val"], splits[0]["test"]
    models = [_scores(w, args.model_name) for w in args.run]
    rows = {}
    for workdir, (name, scores, min_sens) in zip(args.run, models):
        p_val, p_test = np.asarray(scores["val"]), np.asarray(scores["test"])
        rows[f"{name} ({workdir.name})"] = evaluate(val_labels, p_val, test_labels, p_test, min_sens, args.level)
    if len(models) > 1:
        p_val = np.mean([s["val"] for _, s, _ in models], axis=0)
        p_test = np.mean([s["test"] for _, s, _ in models], axis=0)
        rows["average of " + " + ".join(n for n, _, _ in models)] = evaluate(
            val_labels, p_val, test_labels, p_test, models[0][2], args.level
        )
    keys = list(next(iter(rows.values())))
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
