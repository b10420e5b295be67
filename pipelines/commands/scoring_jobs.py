"""``skin-cancer score``: the scoring pipeline under kfp.local, like ``run`` for training."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from components.core.settings import EXPERIMENT, REGISTERED_MODEL_NAME, SCORING_MAX_BAD_FRACTION
from pipelines.commands.local_jobs import DEFAULT_WORKDIR, in_session


def cmd_score(args: argparse.Namespace) -> int:
    return in_session(args, "score", _score)


def _score(args: argparse.Namespace, workdir: Path, session) -> int:
    from kfp import local

    from components.core import settings
    from components.core.registry import tracking
    from pipelines.scoring_pipeline import ScoringSettings, build_scoring_pipeline

    uri = tracking.use_uri_credentials(settings.tracking_uri() or tracking.local_tracking_uri(str(workdir)))
    tracking.setup(uri, args.experiment)  # fail now, with a clear message, if MLflow is unusable
    os.environ.setdefault("KFP_RUN_ID", f"local-score-{time.strftime('%Y%m%d-%H%M%S')}")
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "pipeline-root"), raise_on_error=True
    )
    pipeline = build_scoring_pipeline(ScoringSettings(parallelism=args.parallelism, retries=0))
    session.console.status(f"log: {session.path}")
    try:
        task = pipeline(
            data_uri=args.data,
            out_uri=args.out,
            model_uri=args.model_uri,
            reference_uri=args.reference or "",
            labels_uri=args.labels or "",
            shard_size=args.shard_size,
            max_bad_fraction=args.max_bad_fraction,
            mlflow_tracking_uri=uri,
            experiment_name=args.experiment,
        )
    except RuntimeError as err:  # kfp.local: a task failed
        session.watcher.report_failure(err, session.path)
        return 1
    summary = json.loads(task.output)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1, default=float))
    say = session.console.result
    say(
        f"scored {summary['scored']} new images ({summary['already_scored']} already scored, "
        f"{summary['errors']} could not be scored); {summary['referred']} referred, {summary['malignant']} malignant"
    )
    for s in summary["signals"]:
        say(f"  {s['signal']} drift: {s['verdict']}")
    if summary["retrain_recommended"]:
        say("retraining recommended: " + "; ".join(summary["retrain_reasons"]))
    if summary["review_recommended"]:
        say("review recommended (the outputs moved, the inputs did not): " + "; ".join(summary["review_reasons"]))
    say(f"predictions: {summary['predictions_uri'] or '(none new)'}")
    return 0


def register(sub) -> None:
    sc = sub.add_parser("score", help="score the new images under a prefix (the scoring pipeline, under kfp.local)")
    sc.add_argument("--data", required=True, help="prefix of new images: s3://bucket/prefix or a folder")
    sc.add_argument("--out", required=True, help="where predictions go (and what was scored before)")
    sc.add_argument(
        "--model-uri",
        default=f"models:/{REGISTERED_MODEL_NAME}@champion",
        help="models:/NAME@ALIAS, models:/NAME/VERSION or a Model artifact directory",
    )
    sc.add_argument("--reference", help="the model's preprocessed validation split (for the drift verdicts)")
    sc.add_argument("--labels", help="CSV of key,label to join to the rows scored so far")
    sc.add_argument("--shard-size", type=int, default=500, help="files per scoring task")
    sc.add_argument("--parallelism", type=int, default=1, help="shards scored at once (default 1 on a CPU)")
    sc.add_argument("--max-bad-fraction", type=float, default=SCORING_MAX_BAD_FRACTION)
    sc.add_argument("--experiment", default=EXPERIMENT)
    sc.add_argument("--workdir", default=DEFAULT_WORKDIR, help="local pipeline root and MLflow store")
    sc.add_argument("--summary-json")
    sc.set_defaults(func=cmd_score)
