"""``skin-cancer``: the one command line for people.

Subcommands (pipelines/commands/): demo-data, preprocess, train, run (the whole pipeline under
kfp.local), compile (KFP IR YAML for a cluster), submit and schedule (runs on a KFP cluster),
predict, serve (the inference server and clinician page).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipelines.commands import cluster, local_jobs, model_use


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skin-cancer", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    for commands in (local_jobs, cluster, model_use):
        commands.register(sub)
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
