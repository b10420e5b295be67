"""``skin-cancer demo-data | preprocess | train | run``: the jobs that run on this machine."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from components.core.settings import CLASSES, EXPERIMENT, MAX_BAD_FRACTION, REGISTERED_MODEL_NAME, SEED, VAL_FRACTION
from pipelines.presets import PRESETS

DEFAULT_WORKDIR = "runs"


def _models_arg(value: str) -> list[dict]:
    """``basic,crossval`` or a JSON list of model configs."""
    value = value.strip()
    if value.startswith("["):
        return json.loads(value)
    return [{"family": name.strip()} for name in value.split(",") if name.strip()]


def cmd_demo_data(args: argparse.Namespace) -> int:
    from components.core.demo_data import write_demo_data

    counts = write_demo_data(args.dir, args.train_per_class, args.test_per_class, args.size, args.seed)
    print(f"wrote SYNTHETIC demo data to {args.dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from components.core import dataset

    out = Path(args.out)
    report = dataset.preprocess(
        args.data,
        {s: str(out / s) for s in dataset.OUTPUT_SPLITS},
        image_size=args.image_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        max_bad_fraction=args.max_bad_fraction,
        progress=True,
        allow_leakage=args.allow_leakage,
    )
    for name, split in report.splits.items():
        counts = ", ".join(f"{c} {n}" for c, n in split["class_counts"].items())
        print(f"{name:>5}: {split['count']:5d} images ({counts})")
    tv = {c: report.splits["train"]["class_counts"][c] + report.splits["val"]["class_counts"][c]
          for c in CLASSES}
    print(f"train+val: {', '.join(f'{c} {n}' for c, n in tv.items())}")
    print(f"skipped: {len(report.skipped)}")
    for s in report.skipped:
        print(f"  {s['key']}: {s['reason']}")
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"fingerprint: {report.fingerprint}")
    print(f"{report.total_images} images in {report.seconds:.1f} s ({report.images_per_second:.0f} images/s)")
    print(f"arrays: {out}/{{train,val,test}} (uint8, {args.image_size}x{args.image_size}x3)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from components.core import settings, tracking
    from components.core.stages import run_train

    uri = settings.tracking_uri() or tracking.local_tracking_uri(args.workdir)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    config = {"family": args.model, **json.loads(args.config)}
    defaults = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "image_size": _split_image_size(args.data), "seed": args.seed}
    data = Path(args.data)
    result = json.loads(run_train(config, str(data / "train"), str(data / "val"), str(data / "test"), defaults,
                                  uri, args.experiment, ""))
    _print_table([result])
    print(f"MLflow run {result['run_id']}, model {result['model_uri']}")
    return 0


def _split_image_size(data_dir: str) -> int:
    from components.core.dataset import DataError

    manifest = Path(data_dir, "train", "manifest.json")
    if not manifest.is_file():
        raise DataError(f"{data_dir}: no train/manifest.json; run `skin-cancer preprocess --out {data_dir}` first")
    return int(json.loads(manifest.read_text())["image_size"])


def _print_table(models: list[dict]) -> None:
    """Validation figures chose the model and its threshold; test figures are reported only."""
    print(f"{'model':<14} {'val acc':>8} {'val auc':>8} {'test acc':>8} {'test auc':>8} {'sens':>6} {'spec':>6} "
          f"{'brier':>6} {'ece':>6} {'seconds':>8}")
    for m in models:
        v, t = m["val"], m["test"]
        print(f"{m['name']:<14} {v['accuracy']:8.3f} {v['auc']:8.3f} {t['accuracy']:8.3f} {t['auc']:8.3f} "
              f"{t['sensitivity']:6.3f} {t['specificity']:6.3f} {t.get('brier', float('nan')):6.3f} "
              f"{t.get('ece', float('nan')):6.3f} {m['seconds']:8.0f}")


def cmd_run(args: argparse.Namespace) -> int:
    from kfp import local

    from components.core import settings, tracking
    from pipelines.training_pipeline import CompileSettings, build_pipeline

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data = args.data
    if not data:
        from components.core.demo_data import write_demo_data

        data = str(workdir / "demo-data")
        if not Path(data, "README.txt").exists():
            write_demo_data(data)
        print(f"no --data given: using SYNTHETIC demo data at {data}")
    uri = settings.tracking_uri() or tracking.local_tracking_uri(str(workdir))
    uri = tracking.use_uri_credentials(uri)  # user:password@ go to the environment, never to a parameter
    tracking.setup(uri, args.experiment)  # fail now, with a clear message, if MLflow is unusable
    # The tasks tag their MLflow runs with this id, as they do with the pod's run id on a cluster.
    os.environ.setdefault("KFP_RUN_ID", f"local-{time.strftime('%Y%m%d-%H%M%S')}")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "pipeline-root"),
               raise_on_error=True)
    # No task-level retries locally: botocore and MLflow retry requests, and a real error
    # should surface at once instead of after minutes of backoff.
    pipeline = build_pipeline(CompileSettings(parallelism=args.parallelism, retries=0))
    params = {"data_uri": data, "mlflow_tracking_uri": uri, "experiment_name": args.experiment,
              "registered_model_name": args.model_name}
    for key in ("models", "image_size", "epochs", "batch_size", "learning_rate", "seed", "val_fraction",
                "max_bad_fraction", "allow_leakage"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    started = time.perf_counter()
    task = pipeline(**params)
    summary = json.loads(task.output)
    summary["wall_seconds"] = time.perf_counter() - started
    summary["mlflow_tracking_uri"] = tracking._redact(uri)
    print()
    _print_table(summary["models"])
    reg = summary["registered_model"]
    print(f"\nregistered {reg['name']} version {reg['version']} as @{reg['alias']}; "
          f"champion: version {reg['champion_version']} ({'changed' if reg['champion_changed'] else 'unchanged'})")
    print(f"MLflow: {summary['mlflow_tracking_uri']}   wall time: {summary['wall_seconds']:.0f} s")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1, default=float))
    return 0


def register(sub) -> None:
    d = sub.add_parser("demo-data", help="write a small SYNTHETIC data set in the raw layout")
    d.add_argument("dir")
    d.add_argument("--train-per-class", type=int, default=80)
    d.add_argument("--test-per-class", type=int, default=24)
    d.add_argument("--size", type=int, default=96)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo_data)
    pp = sub.add_parser("preprocess", help="raw images (s3:// or a folder) -> uint8 train/val/test arrays")
    pp.add_argument("--data", required=True)
    pp.add_argument("--out", required=True)
    pp.add_argument("--image-size", type=int, default=PRESETS["local-cpu"]["image_size"])
    pp.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    pp.add_argument("--seed", type=int, default=SEED)
    pp.add_argument("--max-bad-fraction", type=float, default=MAX_BAD_FRACTION)
    pp.add_argument("--allow-leakage", action="store_true",
                    help="accept test images whose bytes also appear in train/val (default: fail)")
    pp.set_defaults(func=cmd_preprocess)
    t = sub.add_parser("train", help="train one model family on preprocessed arrays")
    t.add_argument("--data", required=True, help="output folder of `skin-cancer preprocess`")
    t.add_argument("--model", required=True, help="model family (basic, crossval, resnet50, efficientnet, mobilenetv3)")
    t.add_argument("--epochs", type=int, default=PRESETS["local-cpu"]["epochs"])
    t.add_argument("--batch-size", type=int, default=PRESETS["local-cpu"]["batch_size"])
    t.add_argument("--learning-rate", type=float, default=PRESETS["local-cpu"]["learning_rate"])
    t.add_argument("--seed", type=int, default=SEED)
    t.add_argument("--config", default="{}", help="JSON of further hyperparameters, e.g. '{\"augment\": false}'")
    t.add_argument("--workdir", default=DEFAULT_WORKDIR)
    t.add_argument("--experiment", default=EXPERIMENT)
    t.set_defaults(func=cmd_train)
    r = sub.add_parser("run", help="run the whole pipeline locally under kfp.local (the main job)")
    r.add_argument("--data", help="raw data URI; default: SYNTHETIC demo data")
    r.add_argument("--models", type=_models_arg, help="comma-separated families or a JSON list of configs")
    r.add_argument("--image-size", type=int)
    r.add_argument("--epochs", type=int)
    r.add_argument("--batch-size", type=int)
    r.add_argument("--learning-rate", type=float)
    r.add_argument("--seed", type=int)
    r.add_argument("--val-fraction", type=float)
    r.add_argument("--max-bad-fraction", type=float)
    r.add_argument("--allow-leakage", action="store_true", default=None,
                   help="accept test images whose bytes also appear in train/val (default: fail)")
    r.add_argument("--parallelism", type=int, default=1, help="models trained at once (default 1 on a CPU)")
    r.add_argument("--model-name", default=REGISTERED_MODEL_NAME)
    r.add_argument("--experiment", default=EXPERIMENT)
    r.add_argument("--workdir", default=DEFAULT_WORKDIR, help="local pipeline root, demo data and MLflow store")
    r.add_argument("--summary-json")
    r.set_defaults(func=cmd_run)
