"""Batch scoring's speed and memory against the same model's raw batched forward pass (issue 24).

    .venv/bin/python -m benchmarks.scoring --model-uri DIR_OR_MODELS_URI [--data ../shared/data/skin-cancer]
        [--images 1000] [--memory-images 4000] [--batch 64] [--out runs/bench-scoring]

An inbox of N distinct JPEG files is made from the real images (cycled; each copy gets a few
trailing bytes after the JPEG's end, which decoders ignore, so every file has its own SHA-256
and nothing is skipped as already scored). Each measurement runs in its own process, one after
the other, on the same files and machine, and is timed after one warm-up batch through both
passes:

* ``raw``: read each file, decode it with the project's decoder, the classifier's forward pass
  on batches of ``--batch`` (``Predictor.predict_arrays``, the traced graph): what the model
  alone costs;
* ``raw+features``: the same plus the ImageNet feature pass that the decision policy's scope
  check needs (what any refer-capable consumer costs);
* ``scoring``: ``scoring.run.score_files`` (hash, skip check, decode, both passes, the policy's
  decisions, the input-monitoring numbers, one Parquet file), at ``--images`` and at
  ``--memory-images`` files: images/s and the process's peak resident memory (VmHWM), against
  the scoring task's memory request (``ScoringSettings.score_memory``).

Every measurement process starts as the scoring task does (``inference.runtime.bound_model_memory``).

Writes ``scoring.json`` and ``scoring.md`` to ``--out``; prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 0.8  # scoring's images/s over the raw forward pass's (issue 24)
TARGET_MEMORY = 1.25  # peak memory at --memory-images over that at --images
TARGET_REQUEST = 0.8  # the largest peak over the scoring task's memory request (issue 32)
_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_mb(quantity: str) -> float:
    """A Kubernetes memory quantity ("4G", "2Gi", "512Mi") in the MB that VmHWM is read in
    (kB / 1024, i.e. MiB)."""
    number = quantity.rstrip("kMGTi")
    return float(number) * _UNITS[quantity[len(number) :]] / 2**20


def make_inbox(data: Path, root: Path, count: int) -> list[str]:
    """``count`` distinct JPEG files under ``root`` from the real images, cycled."""
    sources = sorted(data.glob("*/*/*.jpg"))
    if not sources:
        raise FileNotFoundError(f"{data}: no {{train,test}}/{{benign,malignant}}/*.jpg images")
    root.mkdir(parents=True, exist_ok=True)
    uris = []
    for i in range(count):
        path = root / f"day/{i // 500:03d}/{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sources[i % len(sources)].read_bytes() + f"\n#{i}".encode())
        uris.append(str(path))
    return uris


def _child(mode: str, model_uri: str, inbox: str, count: int, batch: int) -> dict:
    """One measurement, in this process (started fresh by :func:`measure`)."""
    from components.core.inference.runtime import SCORING_INTER_OP_THREADS, bound_model_memory

    bound_model_memory(SCORING_INTER_OP_THREADS)  # as the scoring task does, first thing (every mode alike)

    import numpy as np

    from benchmarks.memory import peak_rss_mb
    from components.core.data.images import decode_image
    from components.core.inference.predictor import Predictor
    from components.core.scoring import run

    predictor = Predictor.load(model_uri)
    uris = sorted(str(p) for p in Path(inbox).rglob("*.jpg"))[:count]
    # One full batch through both passes first: every mode then starts with its kernels set up.
    warm = np.stack([decode_image(Path(u).read_bytes(), predictor.image_size) for u in uris[:batch]])
    predictor.predict_pixels(warm, imagenet=predictor.imagenet_features(warm))
    started = time.perf_counter()
    if mode in ("raw", "raw+features"):
        for i in range(0, len(uris), batch):
            pixels = np.stack([decode_image(Path(u).read_bytes(), predictor.image_size) for u in uris[i : i + batch]])
            predictor.predict_arrays(pixels)
            if mode == "raw+features":
                predictor.imagenet_features(pixels)
        scored = len(uris)
    elif mode == "scoring":
        with tempfile.TemporaryDirectory(prefix="bench-scored-") as out:
            result, _ = run.score_files(predictor, uris, inbox, out, "bench", batch)
            scored = sum(1 for r in result.rows if not r["error"])
    else:
        raise ValueError(mode)
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "images": scored,
        "seconds": round(seconds, 2),
        "images_per_s": round(scored / seconds, 2),
        "peak_rss_mb": peak_rss_mb(),
    }


def measure(mode: str, model_uri: str, inbox: Path, count: int, batch: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.scoring",
        "--child",
        mode,
        "--model-uri",
        model_uri,
        "--inbox",
        str(inbox),
        "--images",
        str(count),
        "--batch",
        str(batch),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} at {count} images failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_benchmark(
    model_uri: str, data: Path, out: Path, images: int, memory_images: int, batch: int, log=print
) -> dict:
    from benchmarks.machine import machine_info, machine_line
    from pipelines.scoring_pipeline import ScoringSettings

    request = ScoringSettings().score_memory
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-inbox-") as tmp:
        inbox = Path(tmp) / "inbox"
        make_inbox(data, inbox, max(images, memory_images))
        results = []
        for mode, count in (("raw", images), ("raw+features", images), ("scoring", images), ("scoring", memory_images)):
            results.append(measure(mode, model_uri, inbox, count, batch))
            log(json.dumps(results[-1]))
    raw, feats, small, large = results
    report = {
        "machine": machine_line(machine_info()),
        "model_uri": model_uri,
        "batch": batch,
        "results": results,
        "scoring_over_raw": round(small["images_per_s"] / raw["images_per_s"], 3),
        "scoring_over_raw_with_features": round(small["images_per_s"] / feats["images_per_s"], 3),
        "memory_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "memory_request": request,
        "peak_over_request": round(max(r["peak_rss_mb"] for r in results) / quantity_mb(request), 3),
        "targets": {
            "scoring_over_raw": TARGET_RATIO,
            "memory_ratio": TARGET_MEMORY,
            "peak_over_request": TARGET_REQUEST,
        },
    }
    lines = [
        f"Batch scoring benchmark ({report['machine']}; model {model_uri}; batch {batch})",
        "",
        "| measurement | images | s | images/s | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['mode']} | {r['images']} | {r['seconds']} | {r['images_per_s']} | {r['peak_rss_mb']} |" for r in results
    ]
    lines += [
        "",
        f"scoring / raw forward pass: {report['scoring_over_raw']} (target >= {TARGET_RATIO})",
        f"scoring / raw forward pass + ImageNet features: {report['scoring_over_raw_with_features']}",
        f"peak memory at {memory_images} / at {images}: {report['memory_ratio']} (target <= {TARGET_MEMORY})",
        f"largest peak / the scoring task's memory request ({request}, {quantity_mb(request):.0f} MB): "
        f"{report['peak_over_request']} (target <= {TARGET_REQUEST})",
    ]
    (out / "scoring.json").write_text(json.dumps(report, indent=1))
    (out / "scoring.md").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> int:
    from benchmarks.data import find_default_data

    ap = argparse.ArgumentParser(prog="python -m benchmarks.scoring", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-uri", required=True, help="a Model directory or models:/NAME@ALIAS")
    ap.add_argument("--data", type=Path, default=None, help="the real images (default ../shared/data/skin-cancer)")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--memory-images", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-scoring"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--inbox", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.model_uri, args.inbox, args.images, args.batch)))
        return 0
    run_benchmark(
        args.model_uri, args.data or find_default_data(), args.out, args.images, args.memory_images, args.batch
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
