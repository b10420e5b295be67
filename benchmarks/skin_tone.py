"""The skin-tone make-up of a raw data set: ITA group, original size and brightness of every image.

    .venv/bin/python -m benchmarks.skin_tone [--data ../shared/data/skin-cancer] [--json out.json]

Each image is decoded with the project's decoder at the training size, measured as the train
step measures the test split (components/core/evaluation/subgroups.py), and counted per ITA
group by split and class; the original sizes come from the file headers, the brightness
tertiles from each split's own grey levels. The data stay where they are; nothing is copied.
The distribution measured on the real data is in docs/skin-tone.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from components.core.settings import CLASSES, IMAGE_SIZE

SPLITS = ("train", "test")


def read_split(root: Path, split: str, size: int) -> tuple[np.ndarray, list[str], list[dict]]:
    """Pixels (n, size, size, 3), class names and source entries (key, width, height) of one raw split."""
    from components.core.data.images import decode_image, original_size

    pixels, classes, sources = [], [], []
    for cls in CLASSES:
        for path in sorted((root / split / cls).glob("*.jpg")):
            data = path.read_bytes()
            width, height = original_size(data) or (None, None)
            pixels.append(decode_image(data, size))
            classes.append(cls)
            sources.append({"key": f"{split}/{cls}/{path.name}", "width": width, "height": height})
    return np.stack(pixels), classes, sources


def measure_split(root: Path, split: str, size: int) -> dict:
    from components.core.evaluation import subgroups

    pixels, classes, sources = read_split(root, split, size)
    measures = subgroups.measure(pixels[i : i + subgroups.BATCH] for i in range(0, len(pixels), subgroups.BATCH))
    attributes = subgroups.attributes_of(measures, sources)
    return {
        "classes": classes,
        "ita": measures.ita.tolist(),
        "grey": measures.grey.tolist(),
        "attributes": attributes,
    }


def ita_table(per_split: dict[str, dict]) -> list[str]:
    """Markdown: images per ITA group, by split and class, with the total."""
    from components.core.evaluation.subgroups import ITA_GROUPS

    columns = [(s, c) for s in per_split for c in CLASSES]
    counts = {
        (s, c): Counter(
            g for g, k in zip(per_split[s]["attributes"]["skin_tone_ita"], per_split[s]["classes"]) if k == c
        )
        for s, c in columns
    }
    total = sum(len(m["classes"]) for m in per_split.values())
    lines = [
        "| ITA group | " + " | ".join(f"{s} {c}" for s, c in columns) + " | all | share |",
        "|---|" + "---:|" * (len(columns) + 2),
    ]
    for group in ITA_GROUPS:
        row = [counts[k][group] for k in columns]
        lines.append(f"| {group} | " + " | ".join(map(str, row)) + f" | {sum(row)} | {sum(row) / total:.1%} |")
    sums = [sum(counts[k].values()) for k in columns]
    lines.append("| all | " + " | ".join(map(str, sums)) + f" | {sum(sums)} | 100% |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.skin_tone", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/skin-cancer", help="raw images {train,test}/{benign,malignant}")
    ap.add_argument("--size", type=int, default=IMAGE_SIZE, help="decode size, as preprocessing does")
    ap.add_argument("--json", help="write every image's ITA, grey level and groups here")
    args = ap.parse_args(argv)
    from benchmarks.machine import machine_info

    root = Path(args.data)
    started = time.perf_counter()
    per_split = {s: measure_split(root, s, args.size) for s in SPLITS if (root / s).is_dir()}
    seconds = time.perf_counter() - started
    if not per_split:
        raise SystemExit(f"{root}: no train/ or test/ folder")
    for line in ita_table(per_split):
        print(line)
    angles = np.concatenate([m["ita"] for m in per_split.values()])
    q = np.percentile(angles, [0, 5, 25, 50, 75, 95, 100])
    print("\nITA (degrees) min, 5 %, 25 %, median, 75 %, 95 %, max: " + ", ".join(f"{v:.1f}" for v in q))
    for split, m in per_split.items():
        sizes = Counter(m["attributes"]["image_size"])
        brightness = Counter(m["attributes"]["brightness"])
        edges = np.quantile(m["grey"], [1 / 3, 2 / 3])
        print(
            f"{split}: sizes {dict(sizes.most_common())}; brightness tertiles at grey {edges[0]:.1f} and "
            f"{edges[1]:.1f}: {dict(brightness)}"
        )
    machine = machine_info()
    print(f"\n{len(angles)} images in {seconds:.1f} s at {args.size} px on {machine['cpu_model']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "machine": machine, "splits": per_split}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
