"""``skin-cancer compile | submit | schedule``: the pipeline for a Kubeflow Pipelines cluster."""

from __future__ import annotations

import argparse
import json

from pipelines.presets import PRESETS


def _compile_settings(args: argparse.Namespace):
    """The compile flags (shared by compile, submit and schedule create) as the settings of the
    pipeline ``--pipeline`` names: CompileSettings (training) or ScoringSettings."""
    from components.core import settings
    from pipelines.training_pipeline import CompileSettings

    image, train_image = settings.images(args.image, args.train_image)
    if args.pipeline == "deploy":
        from pipelines.deploy_pipeline import DeploySettings

        if args.preset:
            raise ValueError("--preset holds training parameters; the deploy pipeline takes none")
        return DeploySettings(image=image, retries=args.retries)
    if args.pipeline == "scoring":
        from pipelines.scoring_pipeline import ScoringSettings

        if args.preset:
            raise ValueError("--preset holds training parameters; the scoring pipeline takes none")
        return ScoringSettings(
            image=image, retries=args.retries, **({"parallelism": args.parallelism} if args.parallelism else {})
        )

    for kv in args.node_selector:
        if "=" not in kv:
            raise ValueError(f"--node-selector {kv!r}: expected KEY=VALUE")
    return CompileSettings(
        image=image,
        train_image=train_image,
        parallelism=args.parallelism,
        accelerator_type=args.accelerator_type,
        gpus_per_model=args.gpus_per_model,
        node_selector=dict(kv.split("=", 1) for kv in args.node_selector),
        tolerations=[json.loads(t) for t in args.toleration],
        retries=args.retries,
        parameter_defaults=dict(PRESETS[args.preset]) if args.preset else {},
        require_approval=args.require_approval,
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

    run = submit(
        _target(args),
        _compile_settings(args),
        args.param,
        args.experiment,
        args.run_name,
        args.service_account,
        enable_caching=False if args.no_cache else None,
    )
    print(f"run id: {run.run_id}")
    print(f"dashboard: {run.url}")
    return 0


def cmd_schedule_create(args: argparse.Namespace) -> int:
    from pipelines.submit import create_schedule

    name = args.name or ("skin-cancer-scoring-nightly" if args.pipeline == "scoring" else "skin-cancer-retrain")
    job = create_schedule(
        _target(args),
        _compile_settings(args),
        args.param,
        args.cron,
        name,
        args.experiment,
        max_concurrency=args.max_concurrency,
        catchup=args.catchup,
        service_account=args.service_account,
    )
    print(f"recurring run id: {job.recurring_run_id}")
    print(f"pipeline version: {job.version_id} (pipeline {job.pipeline_id})")
    print(f"dashboard: {job.url}")
    return 0


def cmd_schedule_list(args: argparse.Namespace) -> int:
    from pipelines.submit import list_schedules

    rows = list_schedules(_target(args), args.experiment)
    print(f"{'id':<38} {'name':<28} {'cron':<18} {'status':<9} {'max':>3}  catch-up")
    for r in rows:
        print(
            f"{r['id']:<38} {r['name'] or '':<28} {r['cron'] or '':<18} {r['status'] or '':<9} "
            f"{r['max_concurrency'] or '':>3}  {'no' if r['no_catchup'] else 'yes'}"
        )
    return 0


def cmd_schedule_delete(args: argparse.Namespace) -> int:
    from pipelines.submit import delete_schedule

    delete_schedule(_target(args), args.id)
    print(f"deleted recurring run {args.id}")
    return 0


def _add_compile_args(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--pipeline",
        choices=("training", "scoring", "deploy"),
        default="training",
        help="which pipeline: training (default), scoring (pipelines/scoring_pipeline.py) or deploy "
        "(the approved @champion: pipelines/deploy_pipeline.py)",
    )
    c.add_argument(
        "--require-approval",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="training: propose the winner for a person's approval instead of moving @champion, and compile "
        "no deploy task (default: on; docs/approval.md)",
    )
    c.add_argument("--image", help="runtime image REGISTRY/NAME:TAG (default from SKIN_CANCER_IMAGE)")
    c.add_argument("--train-image", help="GPU training image (default: SKIN_CANCER_TRAIN_IMAGE or --image)")
    c.add_argument("--parallelism", type=int, default=0, help="models trained at once (0 = all)")
    c.add_argument("--preset", choices=sorted(PRESETS), help="parameter defaults to compile in (pipelines/presets.py)")
    c.add_argument("--accelerator-type", default="nvidia.com/gpu")
    c.add_argument("--gpus-per-model", type=int, default=1)
    c.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="JSON",
        help='e.g. \'{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}\'',
    )
    c.add_argument("--retries", type=int, default=3, help="retries with backoff for steps that touch S3 or MLflow")


def _add_cluster_args(c: argparse.ArgumentParser) -> None:
    from pipelines.submit import HOST_ENV, SA_TOKEN_PATH_ENV, TOKEN_ENV

    c.add_argument("--host", help=f"KFP API URL, e.g. http://localhost:8080 (default: ${HOST_ENV})")
    c.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    c.add_argument(
        "--token",
        help=f"bearer token, audience pipelines.kubeflow.org on a multi-user Kubeflow (prefer "
        f"${TOKEN_ENV}: flags show up in shell history; in a Kubeflow notebook the "
        f"projected token at ${SA_TOKEN_PATH_ENV} is used)",
    )
    c.add_argument("--ui-url", help="dashboard base URL for printed links (default: --host)")


def _add_run_args(c: argparse.ArgumentParser) -> None:
    from components.core import settings

    c.add_argument("--experiment", default=settings.EXPERIMENT, help="KFP experiment (created when missing)")
    c.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='pipeline parameter, e.g. data_uri=s3://bucket/raw or models=\'[{"family": "basic"}]\'',
    )
    c.add_argument(
        "--service-account",
        default=settings.PIPELINE_SERVICE_ACCOUNT,
        help="Kubernetes ServiceAccount the run's pods use ('' = KFP's default)",
    )


def register(sub) -> None:
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
    scc.add_argument(
        "--cron", required=True, help="KFP cron, SIX fields with seconds first, e.g. '0 0 3 * * *' (daily at 03:00 UTC)"
    )
    scc.add_argument(
        "--name",
        help="recurring run name (default: skin-cancer-retrain, or "
        "skin-cancer-scoring-nightly with --pipeline scoring)",
    )
    scc.add_argument(
        "--max-concurrency",
        type=int,
        default=1,
        help="runs of this schedule allowed at once (1-10, the KFP API's limit)",
    )
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
