"""``skin-cancer``: the one command line for people.

Subcommands (pipelines/commands/): demo-data, preprocess, train, run (the whole pipeline under
kfp.local), compile (KFP IR YAML for a cluster), submit and schedule (runs on a KFP cluster),
approve, reject, rollback and history (a person's decisions, recorded in the registry),
predict, serve (the inference server and clinician page).

The console shows what a person wants to see (pipelines/console.py); ``-v`` shows everything,
and ``run`` keeps everything in a log file under its work directory either way.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipelines.commands import approval, cluster, local_jobs, model_use, scoring_jobs

VERBOSE_HELP = "show everything on the console: task logs, TensorFlow, warnings (default: what matters)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skin-cancer", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    for commands in (local_jobs, cluster, approval, model_use, scoring_jobs):
        commands.register(sub)
    for command in sub.choices.values():  # `skin-cancer run -v` as well as `skin-cancer -v run`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return p


class ConsoleFormatter(logging.Formatter):
    """Information as plain lines; warnings and errors keep their level in front."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno <= logging.INFO else f"{record.levelname} {text}"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ information and warnings
    args = build_parser().parse_args(argv)
    if not args.verbose:  # MLflow's download bars; the tasks of `run` inherit it
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    handler = logging.StreamHandler()
    handler.setFormatter(ConsoleFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    from components.core.data.dataset import DataError
    from components.core.data.storage import StorageError
    from components.core.registry.champion_lock import RegistryError
    from components.core.registry.tracking import TrackingError

    try:
        return args.func(args)
    except (DataError, StorageError, TrackingError, RegistryError, FileNotFoundError, ValueError) as err:
        print(f"skin-cancer {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
