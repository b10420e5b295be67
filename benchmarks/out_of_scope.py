"""The out-of-scope measurement on a held-out set of non-dermoscopy images (issue 26).

    .venv/bin/python -m benchmarks.out_of_scope [--model-uri models:/skin-cancer-classifier@champion] [--workdir runs]

The set is files that installed packages ship and that nothing in the project was fitted or
tuned on (the detector's features were chosen on tests/support/drawn_images.py's drawn images and on
scikit-learn's and matplotlib's photographs): scikit-image's sample images (photographs of
people, animals, objects and places, microscopy, immunohistochemistry, a retina, astronomy,
textures, text), networkx's and sympy's plot images and MLflow's logos. Each goes through the
same Predictor as `skin-cancer predict`; the share referred as out_of_scope is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SKIMAGE = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "chessboard_RGB.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "logo.png",
    "microaneurysms.png",
    "moon.png",
    "motorcycle_left.png",
    "page.png",
    "phantom.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)
NETWORKX = ("test_display_labels_and_colors.png", "test_display_shortest_path.png", "test_house_with_colors.png")
SYMPY = ("test_region_and.png", "test_region_not.png", "test_region_or.png", "test_region_xor.png")
MLFLOW = ("anthropic-dark", "langchain-dark", "dspy")


def held_out_set() -> dict[str, Path]:
    """name -> file, for every image of the set (a missing package file is an error, not a skip)."""
    import mlflow
    import networkx
    import skimage
    import sympy

    out = {f"skimage/{n}": Path(skimage.__file__).parent / "data" / n for n in SKIMAGE}
    out |= {f"networkx/{n}": Path(networkx.__file__).parent / "drawing" / "tests" / "baseline" / n for n in NETWORKX}
    out |= {f"sympy/{n}": Path(sympy.__file__).parent / "plotting" / "tests" / n for n in SYMPY}
    media = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "media"
    for stem in MLFLOW:
        found = sorted(media.glob(f"{stem}.*.png"))
        if found:
            out[f"mlflow/{stem}.png"] = found[0]
    missing = [n for n, p in out.items() if not p.is_file()]
    if missing:
        raise SystemExit(f"held-out images missing from the installed packages: {missing}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.out_of_scope", description=__doc__.splitlines()[0])
    ap.add_argument("--model-uri", default="models:/skin-cancer-classifier@champion")
    ap.add_argument(
        "--workdir", default="runs", help="the MLflow store `skin-cancer run` left (without MLFLOW_TRACKING_URI)"
    )
    ap.add_argument("--json", help="write the per-image results here")
    args = ap.parse_args(argv)
    from components.core import settings
    from components.core.inference.predictor import Predictor
    from components.core.registry import tracking
    from pipelines.commands.model_use import predict_lines

    if args.model_uri.startswith("models:/") and not settings.tracking_uri():
        os.environ["MLFLOW_TRACKING_URI"] = tracking.local_tracking_uri(args.workdir)
    predictor = Predictor.load(args.model_uri)
    images = held_out_set()
    lines = predict_lines(predictor, [str(p) for p in images.values()])
    rows = [{"name": name, **{k: v for k, v in line.items() if k != "image"}} for name, line in zip(images, lines)]
    refused = [r for r in rows if r.get("refer_reason") == "out_of_scope"]
    for r in rows:
        print(
            f"{r['name']:45s} {r.get('decision', 'error'):9s} {r.get('refer_reason') or '':12s} "
            f"ood {r.get('ood_score', float('nan')):7.2f}  p {r.get('p_malignant', float('nan')):.3f}"
        )
    print(
        f"out_of_scope: {len(refused)} of {len(rows)} ({len(refused) / len(rows):.1%}); model {args.model_uri} "
        f"version {predictor.model_version}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"model_uri": args.model_uri, "version": predictor.model_version, "rows": rows}, indent=1)
        )
    return 0 if len(refused) >= 0.95 * len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
