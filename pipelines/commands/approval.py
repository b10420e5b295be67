"""``skin-cancer approve | reject | rollback | history``: a person's decisions on the registry.

The registry is MLFLOW_TRACKING_URI's, else the one `skin-cancer run` left in --workdir. Every
decision is recorded in it (components/core/registry/approval.py), with who made it: the user
the MLflow server authenticated, or the local user marked as unauthenticated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.core.settings import REGISTERED_MODEL_NAME
from pipelines.commands.local_jobs import DEFAULT_WORKDIR


def _registry(args: argparse.Namespace):
    """(MlflowClient, the decider's identity) for the registry these commands act on."""
    from mlflow import MlflowClient

    from components.core import settings
    from components.core.registry import approval, tracking

    uri = settings.tracking_uri()
    if not uri:
        db = Path(args.workdir, "mlflow.db")
        if not db.is_file():
            raise ValueError(
                f"no MLflow registry: set MLFLOW_TRACKING_URI, or pass the --workdir of `skin-cancer run` "
                f"(looked for {db})"
            )
        uri = tracking.local_tracking_uri(args.workdir)
    tracking.setup(uri)
    import mlflow

    return MlflowClient(), approval.current_identity(mlflow.get_tracking_uri())


def _after(client, name: str, versions: list[str]) -> None:
    """Rewrite the approval section of the cards concerned; a failure is said, the decision stands."""
    from components.core.reporting.model_card import refresh_approval

    for v in versions:
        for problem in refresh_approval(client, name, v):
            print(f"warning: the decision is recorded, but the card was not updated: {problem}", file=sys.stderr)


def cmd_approve(args: argparse.Namespace) -> int:
    from components.core import settings
    from components.core.registry import approval

    client, by = _registry(args)
    event = approval.approve(
        client,
        args.model_name,
        args.version,
        args.reason,
        by,
        overrides=args.override_gate,
        four_eyes=settings.env("SKIN_CANCER_FOUR_EYES") == "1",
    )
    _after(client, args.model_name, [args.version] + ([event["from_version"]] if event.get("from_version") else []))
    print(
        f"approved {args.model_name} version {args.version} by {by}: it is @champion"
        + (f" (version {event['from_version']} is @previous)" if event.get("from_version") else "")
    )
    if args.deploy:
        return _deploy(args)
    print(
        "not deployed: `skin-cancer approve --deploy` or `skin-cancer submit --pipeline deploy` serves it on a cluster; "
        "scoring follows @champion from its next run"
    )
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from components.core import settings
    from pipelines.deploy_pipeline import DeploySettings
    from pipelines.submit import resolve_target, submit

    image, _ = settings.images(args.image, None)
    run = submit(
        resolve_target(args.host, args.namespace, args.token, args.ui_url),
        DeploySettings(image=image),
        [f"registered_model_name={args.model_name}", *args.param],
        args.experiment,
        None,
        args.service_account,
    )
    print(f"deploy run id: {run.run_id}")
    print(f"dashboard: {run.url}")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    from components.core.registry import approval

    client, by = _registry(args)
    approval.reject(client, args.model_name, args.version, args.reason, by)
    _after(client, args.model_name, [args.version])
    print(f"rejected {args.model_name} version {args.version} by {by}; @champion did not move")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from components.core.registry import approval

    client, by = _registry(args)
    event = approval.rollback(client, args.model_name, args.reason, by)
    _after(client, args.model_name, [event["version"], event["from_version"]])
    print(
        f"rolled back {args.model_name}: version {event['version']} is @champion again "
        f"(version {event['from_version']} is marked rolled back) by {by}"
    )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from components.core.registry import approval

    client, _ = _registry(args)
    events = approval.history(client, args.model_name)
    if not events:
        print(f"no recorded decisions for {args.model_name}")
        return 0
    print(f"{'when (UTC)':<20}  {'event':<11}  {'version':>7}  {'from':>4}  {'by':<28}  {'evidence':<12}  reason")
    for e in events:
        print(
            f"{e.get('at', '?'):<20}  {e.get('event', '?'):<11}  {e.get('version') or '':>7}  "
            f"{e.get('from_version') or '':>4}  {e.get('by', '?'):<28}  {(e.get('evidence_sha256') or '')[:12]:<12}  "
            f"{e.get('reason', '')}" + (f" [override: {', '.join(e['overrides'])}]" if e.get("overrides") else "")
        )
    return 0


def register(sub) -> None:
    from pipelines.commands.cluster import _add_cluster_args, _add_run_args

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model-name", default=REGISTERED_MODEL_NAME, help="registered model")
        p.add_argument(
            "--workdir", default=DEFAULT_WORKDIR, help="`skin-cancer run`'s folder, without MLFLOW_TRACKING_URI"
        )

    a = sub.add_parser("approve", help="make a proposed version @champion, with your reason (recorded)")
    a.add_argument("version")
    a.add_argument("--reason", required=True, help="why; recorded with your name and the evidence's SHA-256")
    a.add_argument(
        "--override-gate",
        action="append",
        default=[],
        metavar="NAME",
        help="approve although gate NAME failed (say why in --reason)",
    )
    a.add_argument("--deploy", action="store_true", help="then submit the deploy pipeline to KFP (--host ...)")
    a.add_argument("--image", help="runtime image of the deploy pipeline (default from SKIN_CANCER_IMAGE)")
    common(a)
    _add_cluster_args(a)
    _add_run_args(a)
    a.set_defaults(func=cmd_approve)
    r = sub.add_parser("reject", help="refuse a proposed version, with your reason (recorded)")
    r.add_argument("version")
    r.add_argument("--reason", required=True)
    common(r)
    r.set_defaults(func=cmd_reject)
    b = sub.add_parser("rollback", help="@champion back to @previous, with your reason (recorded)")
    b.add_argument("--reason", required=True)
    common(b)
    b.set_defaults(func=cmd_rollback)
    h = sub.add_parser("history", help="every champion change, approval, rejection and rollback, newest first")
    common(h)
    h.set_defaults(func=cmd_history)
