"""``skin-cancer``: the one command line for people.

Subcommands: demo-data, preprocess, train, run (the whole pipeline under kfp.local),
compile (KFP IR YAML for a cluster), submit and schedule (runs on a KFP cluster), predict,
serve (the inference server and clinician page).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

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
          for c in dataset.CLASSES}
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
    from components.core import tracking
    from components.core.stages import run_train

    uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking.local_tracking_uri(args.workdir)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    config = {"family": args.model, **json.loads(args.config)}
    defaults = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "image_size": _split_image_size(args.data), "seed": args.seed}
    data = Path(args.data)
    result = json.loads(run_train(config, str(data / "train"), str(data / "val"), str(data / "test"), defaults,
                                  uri, args.experiment, "", "cli"))
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

    from components.core import tracking
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
    uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking.local_tracking_uri(str(workdir))
    uri = tracking.use_uri_credentials(uri)  # user:password@ go to the environment, never to a parameter
    tracking.setup(uri, args.experiment)  # fail now, with a clear message, if MLflow is unusable
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "pipeline-root"),
               raise_on_error=True)
    # No task-level retries locally: botocore and MLflow retry requests, and a real error
    # should surface at once instead of after minutes of backoff.
    pipeline = build_pipeline(CompileSettings(parallelism=args.parallelism, retries=0, train_retries=0))
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


def _compile_settings(args: argparse.Namespace):
    """CompileSettings from the compile flags (shared by compile, submit and schedule create)."""
    # Images are fixed when the component modules are imported: set them first.
    if args.image:
        os.environ["SKIN_CANCER_IMAGE"] = args.image
    if args.train_image or args.image:
        os.environ["SKIN_CANCER_TRAIN_IMAGE"] = args.train_image or args.image
    from components import config
    from pipelines.training_pipeline import CompileSettings

    wanted = (os.environ.get("SKIN_CANCER_IMAGE", config.DEFAULT_IMAGE),
              os.environ.get("SKIN_CANCER_TRAIN_IMAGE", config.DEFAULT_TRAIN_IMAGE))
    if (config.RUNTIME_IMAGE, config.TRAIN_IMAGE) != wanted:  # imported too early: fail, never compile wrong images
        raise RuntimeError(f"component images were fixed before --image/--train-image were read: "
                           f"{config.RUNTIME_IMAGE}, {config.TRAIN_IMAGE}")

    for kv in args.node_selector:
        if "=" not in kv:
            raise ValueError(f"--node-selector {kv!r}: expected KEY=VALUE")
    return CompileSettings(
        parallelism=args.parallelism,
        accelerator_type=args.accelerator_type,
        gpus_per_model=args.gpus_per_model,
        node_selector=dict(kv.split("=", 1) for kv in args.node_selector),
        tolerations=[json.loads(t) for t in args.toleration],
        retries=args.retries,
        parameter_defaults=dict(PRESETS[args.preset]) if args.preset else {},
    )


def cmd_compile(args: argparse.Namespace) -> int:
    from pipelines.submit import compile_package

    compile_package(_compile_settings(args), args.output)
    print(f"wrote {args.output}")
    return 0


def _target(args: argparse.Namespace):
    from pipelines.submit import resolve_target

    return resolve_target(args.host, args.namespace, args.token, args.ui_url)


def cmd_submit(args: argparse.Namespace) -> int:
    from pipelines.submit import submit

    run = submit(_target(args), _compile_settings(args), args.param, args.experiment, args.run_name,
                 args.service_account, enable_caching=False if args.no_cache else None)
    print(f"run id: {run.run_id}")
    print(f"dashboard: {run.url}")
    return 0


def cmd_schedule_create(args: argparse.Namespace) -> int:
    from pipelines.submit import create_schedule

    job = create_schedule(_target(args), _compile_settings(args), args.param, args.cron, args.name,
                          args.experiment, max_concurrency=args.max_concurrency, catchup=args.catchup,
                          service_account=args.service_account)
    print(f"recurring run id: {job.recurring_run_id}")
    print(f"pipeline version: {job.version_id} (pipeline {job.pipeline_id})")
    print(f"dashboard: {job.url}")
    return 0


def cmd_schedule_list(args: argparse.Namespace) -> int:
    from pipelines.submit import list_schedules

    rows = list_schedules(_target(args), args.experiment)
    print(f"{'id':<38} {'name':<28} {'cron':<18} {'status':<9} {'max':>3}  catch-up")
    for r in rows:
        print(f"{r['id']:<38} {r['name'] or '':<28} {r['cron'] or '':<18} {r['status'] or '':<9} "
              f"{r['max_concurrency'] or '':>3}  {'no' if r['no_catchup'] else 'yes'}")
    return 0


def cmd_schedule_delete(args: argparse.Namespace) -> int:
    from pipelines.submit import delete_schedule

    delete_schedule(_target(args), args.id)
    print(f"deleted recurring run {args.id}")
    return 0


def _add_compile_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("--image", help="runtime image REGISTRY/NAME:TAG (default from SKIN_CANCER_IMAGE)")
    c.add_argument("--train-image", help="GPU training image (default: SKIN_CANCER_TRAIN_IMAGE or --image)")
    c.add_argument("--parallelism", type=int, default=0, help="models trained at once (0 = all)")
    c.add_argument("--preset", choices=sorted(PRESETS), help="parameter defaults to compile in (pipelines/presets.py)")
    c.add_argument("--accelerator-type", default="nvidia.com/gpu")
    c.add_argument("--gpus-per-model", type=int, default=1)
    c.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--toleration", action="append", default=[], metavar="JSON",
                   help='e.g. \'{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}\'')
    c.add_argument("--retries", type=int, default=3, help="retries with backoff for steps that touch S3 or MLflow")


def _add_cluster_args(c: argparse.ArgumentParser) -> None:
    from pipelines.submit import HOST_ENV, TOKEN_ENV

    c.add_argument("--host", help=f"KFP API URL, e.g. http://localhost:8080 (default: ${HOST_ENV})")
    c.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    c.add_argument("--token", help=f"bearer token (prefer ${TOKEN_ENV}: flags show up in shell history)")
    c.add_argument("--ui-url", help="dashboard base URL for printed links (default: --host)")


def _add_run_args(c: argparse.ArgumentParser) -> None:
    # No import of the pipeline or components here: they would fix the images before --image is read.
    from components.core.tracking import DEFAULT_EXPERIMENT
    from pipelines.submit import DEFAULT_SERVICE_ACCOUNT

    c.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="KFP experiment (created when missing)")
    c.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter, e.g. data_uri=s3://bucket/raw or models='[{\"family\": \"basic\"}]'")
    c.add_argument("--service-account", default=DEFAULT_SERVICE_ACCOUNT,
                   help="Kubernetes ServiceAccount the run's pods use ('' = KFP's default)")


def _use_local_registry(args: argparse.Namespace) -> None:
    """Without MLFLOW_TRACKING_URI, a registry URI means the store `skin-cancer run` left in --workdir."""
    from components.core import tracking

    if args.model_uri.startswith(("models:/", "runs:/")) and not os.environ.get("MLFLOW_TRACKING_URI"):
        # The registry `skin-cancer run` wrote, so `run` then `serve` needs no setup.
        if not Path(args.workdir, "mlflow.db").is_file():
            raise ValueError(f"no MLflow registry to load {args.model_uri} from: set MLFLOW_TRACKING_URI, or run "
                             f"`skin-cancer run` first (looked for {Path(args.workdir, 'mlflow.db')})")
        os.environ["MLFLOW_TRACKING_URI"] = tracking.local_tracking_uri(args.workdir)


def cmd_predict(args: argparse.Namespace) -> int:
    from components.core.predictor import Predictor

    _use_local_registry(args)
    predictor = Predictor.load(args.model_uri)
    for image in args.images:
        result = predictor.predict_bytes(Path(image).read_bytes())
        print(json.dumps({"image": image, "label": result["label"], "p_malignant": result["p_malignant"]}))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from components.core.serving import ServingSettings, serve

    _use_local_registry(args)
    settings = ServingSettings.from_env(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024) if args.max_upload_mb is not None else None,
        max_pixels=args.max_pixels, max_batch=args.max_batch,
        model_name=args.model_name, model_version=args.model_version,
    )
    serve(args.model_uri, host=args.host, port=args.port, settings=settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from components.core.registry import DEFAULT_MODEL_NAME
    from components.core.tracking import DEFAULT_EXPERIMENT

    p = argparse.ArgumentParser(prog="skin-cancer", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

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
    pp.add_argument("--val-fraction", type=float, default=0.15)
    pp.add_argument("--seed", type=int, default=42)
    pp.add_argument("--max-bad-fraction", type=float, default=0.01)
    pp.add_argument("--allow-leakage", action="store_true",
                    help="accept test images whose bytes also appear in train/val (default: fail)")
    pp.set_defaults(func=cmd_preprocess)

    t = sub.add_parser("train", help="train one model family on preprocessed arrays")
    t.add_argument("--data", required=True, help="output folder of `skin-cancer preprocess`")
    t.add_argument("--model", required=True, help="model family (basic, crossval, resnet50, efficientnet, mobilenetv3)")
    t.add_argument("--epochs", type=int, default=PRESETS["local-cpu"]["epochs"])
    t.add_argument("--batch-size", type=int, default=PRESETS["local-cpu"]["batch_size"])
    t.add_argument("--learning-rate", type=float, default=PRESETS["local-cpu"]["learning_rate"])
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--config", default="{}", help="JSON of further hyperparameters, e.g. '{\"augment\": false}'")
    t.add_argument("--workdir", default=DEFAULT_WORKDIR)
    t.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
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
    r.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    r.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    r.add_argument("--workdir", default=DEFAULT_WORKDIR, help="local pipeline root, demo data and MLflow store")
    r.add_argument("--summary-json")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("compile", help="write the KFP IR YAML that a cluster runs")
    c.add_argument("--output", default="pipeline.yaml")
    _add_compile_args(c)
    c.set_defaults(func=cmd_compile)

    su = sub.add_parser("submit", help="compile and start one run on a Kubeflow Pipelines cluster")
    _add_cluster_args(su)
    _add_run_args(su)
    su.add_argument("--run-name", help="default: pipeline name and time")
    su.add_argument("--no-cache", action="store_true", help="run every step, even where KFP's cache has it")
    _add_compile_args(su)
    su.set_defaults(func=cmd_submit)

    sc = sub.add_parser("schedule", help="recurring runs on a Kubeflow Pipelines cluster")
    scs = sc.add_subparsers(dest="schedule_command", required=True)
    scc = scs.add_parser("create", help="upload the pipeline as a version and run it on a cron schedule")
    scc.add_argument("--cron", required=True,
                     help="KFP cron, SIX fields with seconds first, e.g. '0 0 3 * * *' (daily at 03:00 UTC)")
    scc.add_argument("--name", default="skin-cancer-retrain", help="recurring run name")
    scc.add_argument("--max-concurrency", type=int, default=1, help="runs of this schedule allowed at once")
    scc.add_argument("--catchup", action="store_true", help="backfill missed intervals (default: no catch-up)")
    _add_cluster_args(scc)
    _add_run_args(scc)
    _add_compile_args(scc)
    scc.set_defaults(func=cmd_schedule_create)
    scl = scs.add_parser("list", help="list recurring runs")
    _add_cluster_args(scl)
    scl.add_argument("--experiment", help="only this experiment's recurring runs")
    scl.set_defaults(func=cmd_schedule_list)
    scd = scs.add_parser("delete", help="delete a recurring run")
    _add_cluster_args(scd)
    scd.add_argument("id", help="recurring run id (see `skin-cancer schedule list`)")
    scd.set_defaults(func=cmd_schedule_delete)

    pr = sub.add_parser("predict", help="classify images with a registered model")
    pr.add_argument("--model-uri", default=f"models:/{DEFAULT_MODEL_NAME}@champion")
    pr.add_argument("--workdir", default=DEFAULT_WORKDIR, help="where `skin-cancer run` left its MLflow store")
    pr.add_argument("images", nargs="+")
    pr.set_defaults(func=cmd_predict)

    sv = sub.add_parser("serve", help="inference server: V2 protocol, /predict and the clinician page at /")
    sv.add_argument("--model-uri", default=f"models:/{DEFAULT_MODEL_NAME}@champion",
                    help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a Model artifact "
                         "directory (local or s3://) holding model.keras and model.json")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    sv.add_argument("--port", type=int, default=8080)
    sv.add_argument("--model-name", help="name in the V2 paths and answers (default: the registered name)")
    sv.add_argument("--model-version", help="version reported in answers (default: the registry's version)")
    sv.add_argument("--max-upload-mb", type=float,
                    help="largest request body in MiB (default: $SKIN_CANCER_MAX_UPLOAD_MB or 20)")
    sv.add_argument("--max-pixels", type=int,
                    help="largest image in pixels, against decompression bombs (default: $SKIN_CANCER_MAX_PIXELS "
                         "or 40,000,000)")
    sv.add_argument("--max-batch", type=int, help="most images in one V2 request (default 32)")
    sv.add_argument("--workdir", default=DEFAULT_WORKDIR,
                    help="where `skin-cancer run` kept its MLflow store; used when MLFLOW_TRACKING_URI is unset")
    sv.set_defaults(func=cmd_serve)

    from pipelines.bench import add_bench_parser  # `skin-cancer bench`: see README "Benchmarks"

    add_bench_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from components.core.dataset import DataError
    from components.core.storage import StorageError
    from components.core.tracking import TrackingError

    try:
        return args.func(args)
    except (DataError, StorageError, TrackingError, FileNotFoundError, ValueError) as err:
        print(f"skin-cancer {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
