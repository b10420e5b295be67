"""``python -m benchmarks``: the benchmark suite's one command (docs/benchmarks.md).

``python -m benchmarks _child METHOD IN.json OUT.json`` is the runner's own entry for one
measurement in a fresh process; it is not for people.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks.report import COMMAND, markdown
from benchmarks.runner import child_main
from benchmarks.suite import DEFAULT_OUT, run_bench


def build_parser() -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(
        prog=COMMAND, description="benchmarks: this project vs the reference approach and the machine's limits"
    )
    b.add_argument(
        "--data", help="raw images {train,test}/{benign,malignant}/*.jpg (default ../shared/data/skin-cancer)"
    )
    b.add_argument("--out", default=DEFAULT_OUT, help="where bench.json and bench.md go")
    b.add_argument("--quick", action="store_true", help="30 images per folder, short training, no end-to-end run")
    b.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end `skin-cancer run`")
    b.add_argument("--limit", type=int, help="at most this many images per class folder (a subset)")
    b.add_argument("--train-steps", type=int, help="training steps per epoch (default 10; --quick 2)")
    b.add_argument("--train-epochs", type=int, help="training epochs, the first untimed (default 4; --quick 2)")
    b.add_argument("--e2e-timeout", type=float, default=5400, help="seconds before the end-to-end run is stopped")
    b.add_argument(
        "--readme",
        metavar="PAGE",
        help="also rewrite the table between the bench markers in this Markdown page (docs/benchmarks.md)",
    )
    return b


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        return child_main(argv[1:])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    args = build_parser().parse_args(argv)
    try:
        report = run_bench(
            data=args.data,
            out=args.out,
            quick=args.quick,
            skip_e2e=args.skip_e2e,
            limit_per_folder=args.limit,
            train_steps=args.train_steps,
            train_epochs=args.train_epochs,
            e2e_timeout=args.e2e_timeout,
            readme=args.readme,
            command=" ".join([COMMAND, *argv]),
        )
    except (RuntimeError, FileNotFoundError, ValueError) as err:  # no S3 server, no moto, no data: one line
        print(f"{COMMAND}: error: {err}", file=sys.stderr)
        return 2
    print()
    print(markdown(report))
    print(f"wrote {Path(args.out) / 'bench.json'} and {Path(args.out) / 'bench.md'}")
    if report["failures"]:
        print("measurements that failed or did not run:\n  " + "\n  ".join(report["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
