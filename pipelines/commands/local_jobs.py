"""``skin-cancer demo-data | preprocess | train | run``: the jobs that run on this machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from components.core.settings import (
    CLASSES,
    EXPERIMENT,
    MAX_BAD_FRACTION,
    REFER_COVERAGE,
    REGISTERED_MODEL_NAME,
    SEED,
    VAL_FRACTION,
)
from pipelines.console import duration
from pipelines.presets import PRESETS

DEFAULT_WORKDIR = "runs"


def _models_arg(value: str) -> list[dict]:
    """``basic,crossval`` or a JSON list of model configs, each checked here (train_config): an
    unknown key or a bad value stops the command before anything runs, naming the key."""
    from components.core.modeling.train_config import model_configs

    value = value.strip()
    try:
        models = (
            json.loads(value)
            if value.startswith("[")
            else [{"family": name.strip()} for name in value.split(",") if name.strip()]
        )
        model_configs(models)
    except ValueError as err:  # json.JSONDecodeError too; argparse shows this message, not its own
        raise argparse.ArgumentTypeError(str(err)) from None
    return models


def cmd_demo_data(args: argparse.Namespace) -> int:
    from components.core.data.demo_data import write_demo_data

    counts = write_demo_data(args.dir, args.train_per_class, args.test_per_class, args.size, args.seed)
    print(f"wrote SYNTHETIC demo data to {args.dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from components.core.data import dataset
    from pipelines.console import isatty

    out = Path(args.out)
    report = dataset.preprocess(
        args.data,
        {s: str(out / s) for s in dataset.OUTPUT_SPLITS},
        image_size=args.image_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        max_bad_fraction=args.max_bad_fraction,
        progress=isatty(sys.stderr),  # tqdm's bars; in a pipe or CI log they would be one garbled line
        allow_leakage=args.allow_leakage,
    )
    for name, split in report.splits.items():
        counts = ", ".join(f"{c} {n}" for c, n in split["class_counts"].items())
        print(f"{name:>5}: {split['count']:5d} images ({counts})")
    tv = {c: report.splits["train"]["class_counts"][c] + report.splits["val"]["class_counts"][c] for c in CLASSES}
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
    from pipelines.console import Session, log_path, quiet_tensorflow_start

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    image_size = _split_image_size(args.data)  # a missing preprocess output fails before anything starts
    with Session(log_path(args.workdir, "train"), verbose=args.verbose) as session:
        if not args.verbose:
            quiet_tensorflow_start(session.path)
        return _train(args, image_size, session)


def _train(args: argparse.Namespace, image_size: int, session) -> int:
    """Stage 2 in this process: its output goes to the log, its epochs to a progress bar."""
    from components.core import settings
    from components.core.modeling import progress
    from components.core.modeling.train_config import model_config
    from components.core.registry import tracking
    from components.core.step_results import TrainSummary
    from components.core.steps.train import run_train
    from pipelines.console import ModelProgress

    uri = settings.tracking_uri() or tracking.local_tracking_uri(args.workdir)
    config = {"family": args.model, **json.loads(args.config)}
    defaults = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "image_size": image_size,
        "seed": args.seed,
    }
    name, _ = model_config(config, defaults)  # a bad --config fails here, naming the key
    data = Path(args.data)
    bars = ModelProgress(session.console, name)
    if not args.verbose:
        progress.set_sink(bars.event)
    started = time.perf_counter()
    try:
        result = TrainSummary.from_json(
            run_train(
                model_config=config,
                train_path=str(data / "train"),
                val_path=str(data / "val"),
                test_path=str(data / "test"),
                defaults=defaults,
                mlflow_tracking_uri=uri,
                experiment_name=args.experiment,
                data_fingerprint="",
            )
        )
    finally:
        progress.set_sink(None)
        bars.close()
    say = session.console.result
    say(f"trained {result.name} in {duration(time.perf_counter() - started)}")
    say()
    _print_table([result], say)
    say()
    say(f"MLflow run {result.run_id}, model {result.model_uri}")
    _where_to_look(say, uri, args.experiment, [result], session.path)
    return 0


def _split_image_size(data_dir: str) -> int:
    from components.core.data.dataset import DataError

    manifest = Path(data_dir, "train", "manifest.json")
    if not manifest.is_file():
        raise DataError(f"{data_dir}: no train/manifest.json; run `skin-cancer preprocess --out {data_dir}` first")
    return int(json.loads(manifest.read_text())["image_size"])


def _print_table(models: list, say=print) -> None:
    """Validation figures chose the model and its threshold; test figures are reported only.
    ``models``: TrainSummary or ModelResult (step_results), whatever the command has."""
    say(
        f"{'model':<14} {'val acc':>8} {'val auc':>8} {'test acc':>8} {'test auc':>8} {'sens':>6} {'spec':>6} "
        f"{'brier':>6} {'ece':>6} {'seconds':>8}"
    )
    for m in models:
        v, t = m.val, m.test
        say(
            f"{m.name:<14} {v['accuracy']:8.3f} {v['auc']:8.3f} {t['accuracy']:8.3f} {t['auc']:8.3f} "
            f"{t['sensitivity']:6.3f} {t['specificity']:6.3f} {t.get('brier', float('nan')):6.3f} "
            f"{t.get('ece', float('nan')):6.3f} {m.seconds:8.0f}"
        )


def in_session(args: argparse.Namespace, name: str, job) -> int:
    """``job(args, workdir, session)`` with its console and log (``--workdir``/logs/NAME-...)."""
    from pipelines.console import Session, log_path

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    with Session(log_path(workdir, name), verbose=args.verbose) as session:
        return job(args, workdir, session)


RUN_FLAGS = (
    "models",
    "image_size",
    "epochs",
    "batch_size",
    "learning_rate",
    "refer_coverage",
    "seed",
    "val_fraction",
    "max_bad_fraction",
    "allow_leakage",
)


def training_parameters(args: argparse.Namespace) -> dict:
    """The pipeline parameters ``run`` sets: the preset's (every key the pipeline takes, so all of
    it reaches the run), then each flag that was given."""
    preset = {k: v for k, v in PRESETS[args.preset].items() if k in RUN_FLAGS}
    return {**preset, **{k: getattr(args, k) for k in RUN_FLAGS if getattr(args, k) is not None}}


def cmd_run(args: argparse.Namespace) -> int:
    return in_session(args, "run", _run)


def _run(args: argparse.Namespace, workdir: Path, session) -> int:
    """The main job; everything it prints goes to ``session``'s log, a person sees the console."""
    from kfp import local

    from components.core import settings
    from components.core.registry import tracking
    from components.core.step_results import SelectionSummary
    from pipelines.training_pipeline import CompileSettings, build_pipeline

    console = session.console
    data = args.data
    if not data:
        from components.core.data.demo_data import write_demo_data

        data = str(workdir / "demo-data")
        if not Path(data, "README.txt").exists():
            write_demo_data(data)
        console.status(f"no --data given: using SYNTHETIC demo data at {data}")
    console.status(
        f"log: {session.path}" + ("" if args.verbose else "  (everything the tasks print; -v shows it here)")
    )
    local_store = not settings.tracking_uri()
    uri = settings.tracking_uri() or tracking.local_tracking_uri(str(workdir))
    uri = tracking.use_uri_credentials(uri)  # user:password@ go to the environment, never to a parameter
    tracking.setup(uri, args.experiment)  # fail now, with a clear message, if MLflow is unusable
    # The tasks tag their MLflow runs with this id, as they do with the pod's run id on a cluster.
    os.environ.setdefault("KFP_RUN_ID", f"local-{time.strftime('%Y%m%d-%H%M%S')}")
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "pipeline-root"), raise_on_error=True
    )
    # No task-level retries locally: botocore and MLflow retry requests, and a real error
    # should surface at once instead of after minutes of backoff.
    pipeline = build_pipeline(
        CompileSettings(parallelism=args.parallelism, retries=0, require_approval=args.require_approval)
    )
    from components.core.registry.approval import submitter

    params = {
        "data_uri": data,
        "mlflow_tracking_uri": uri,
        "experiment_name": args.experiment,
        "registered_model_name": args.model_name,
        "submitted_by": submitter(),
        **training_parameters(args),
    }
    started = time.perf_counter()
    try:
        task = pipeline(**params)
    except RuntimeError as err:  # kfp.local: a task failed
        session.watcher.report_failure(err, session.path)
        return 1
    summary = SelectionSummary.from_json(task.output)
    wall_seconds = time.perf_counter() - started
    if args.summary_json:
        written = {
            **summary.to_dict(),
            "wall_seconds": wall_seconds,
            "mlflow_tracking_uri": tracking.redact(uri),
            "log": str(session.path),
        }
        Path(args.summary_json).write_text(json.dumps(written, indent=1, default=float))
    say = console.result
    say()
    _print_table(summary.models, say)
    reg = summary.registered_model
    say(
        f"\nregistered {reg.name} version {reg.version} as @{reg.alias}; "
        + (f"champion: version {reg.champion_version}" if reg.champion_version else "no champion")
        + f" ({'changed' if reg.champion_changed else 'unchanged'})"
    )
    if summary.approval:
        where = f" --workdir {workdir}" if local_store else ""
        gates = ", ".join(f"{g['name']} {'passed' if g['passed'] else 'FAILED'}" for g in summary.approval["gates"])
        overrides = "".join(f" --override-gate {g['name']}" for g in summary.approval["gates"] if not g["passed"])
        say(f"waiting for approval: @champion did not move; gates: {gates}")
        say(f'  approve it  skin-cancer approve {reg.version} --reason "..."{overrides}{where}')
        say(f'  reject it   skin-cancer reject {reg.version} --reason "..."{where}')
    say(f"wall time: {duration(wall_seconds)}")
    say()
    _where_to_look(
        say,
        uri,
        args.experiment,
        summary.models,
        session.path,
        _select_outputs(workdir, started),
        args.summary_json,
        # Nothing to serve while the only version waits for approval.
        ("skin-cancer serve" + (f" --workdir {workdir}" if local_store else "")) if reg.champion_version else None,
    )
    return 0


def _select_outputs(workdir: Path, since: float) -> dict[str, Path]:
    """This run's select-and-register files a person reads: its summary, dashboard and model card."""
    wall_start = time.time() - (time.perf_counter() - since)
    runs = [d for d in Path(workdir, "pipeline-root").glob("*/select-and-register") if d.stat().st_mtime >= wall_start]
    if not runs:
        return {}
    folder = max(runs, key=lambda d: d.stat().st_mtime)
    names = {"summary": "summary", "dashboard": "dashboard", "model_card": "model card"}
    return {label: folder / name for name, label in names.items() if (folder / name).is_file()}


def _where_to_look(
    say,
    uri: str,
    experiment: str,
    models: list,
    log: Path,
    files: dict | None = None,
    summary_json: str | None = None,
    serve: str | None = None,
) -> None:
    """Where the results live: MLflow (runs, metrics, figures), the run's files, the log."""
    from components.core.registry import tracking

    rows = []
    if uri.startswith("sqlite:"):
        rows.append(
            (
                "MLflow",
                f"mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000, experiment {experiment!r})",
            )
        )
    else:
        rows.append(("MLflow", f"{tracking.redact(uri)}   (experiment {experiment!r})"))
    for name, where in _figure_folders(uri, models):
        rows.append((f"figures {name}", where))
    rows += [(label, str(path)) for label, path in (files or {}).items()]
    if summary_json:
        rows.append(("summary json", str(Path(summary_json).resolve())))
    rows.append(("log", str(log)))
    if serve:
        rows.append(("serve it", serve))
    say("where to look:")
    width = max(len(label) for label, _ in rows)
    for label, where in rows:
        say(f"  {label:<{width}}  {where}")


def _figure_folders(uri: str, models: list) -> list[tuple[str, str]]:
    """Each model's MLflow figures (run artifacts under ``figures/``): a local folder, or where in MLflow."""
    from urllib.parse import unquote, urlsplit

    import mlflow

    client = mlflow.MlflowClient(uri)
    found = []
    for m in models:
        try:
            if not client.list_artifacts(m.run_id, "figures"):
                continue
            artifact_uri = client.get_run(m.run_id).info.artifact_uri
        except Exception:  # noqa: BLE001 - a hint, never a reason to fail a finished run
            continue
        parts = urlsplit(artifact_uri)
        if parts.scheme in ("", "file"):
            found.append((m.name, str(Path(unquote(parts.path)) / "figures")))
        else:
            found.append((m.name, f"MLflow run {m.run_id}, artifacts figures/"))
    return found


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
    pp.add_argument(
        "--allow-leakage",
        action="store_true",
        help="accept test images whose bytes also appear in train/val (default: fail)",
    )
    pp.set_defaults(func=cmd_preprocess)
    t = sub.add_parser("train", help="train one model family on preprocessed arrays")
    t.add_argument("--data", required=True, help="output folder of `skin-cancer preprocess`")
    t.add_argument(
        "--model",
        required=True,
        help="model family (basic, crossval, efficientnet-lite0, efficientnet-lite1, efficientnet-lite2, resnet50, efficientnet, mobilenetv3)",
    )
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
    r.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="local-cpu",
        help="training parameters (pipelines/presets.py); --models, --epochs, ... override them",
    )
    r.add_argument("--models", type=_models_arg, help="comma-separated families or a JSON list of configs")
    r.add_argument("--image-size", type=int)
    r.add_argument("--epochs", type=int)
    r.add_argument("--batch-size", type=int)
    r.add_argument("--learning-rate", type=float)
    r.add_argument(
        "--refer-coverage",
        type=float,
        help=f"conformal coverage level per class (default {REFER_COVERAGE}): higher refers more, decides more safely",
    )
    r.add_argument("--seed", type=int)
    r.add_argument("--val-fraction", type=float)
    r.add_argument("--max-bad-fraction", type=float)
    r.add_argument(
        "--allow-leakage",
        action="store_true",
        default=None,
        help="accept test images whose bytes also appear in train/val (default: fail)",
    )
    r.add_argument("--parallelism", type=int, default=1, help="models trained at once (default 1 on a CPU)")
    r.add_argument(
        "--require-approval",
        action="store_true",
        help="propose the winner for a person's approval (@challenger) instead of moving @champion "
        "(docs/approval.md); compile, submit and schedule create do this by default",
    )
    r.add_argument("--model-name", default=REGISTERED_MODEL_NAME)
    r.add_argument("--experiment", default=EXPERIMENT)
    r.add_argument("--workdir", default=DEFAULT_WORKDIR, help="local pipeline root, demo data and MLflow store")
    r.add_argument("--summary-json")
    r.set_defaults(func=cmd_run)
