"""Copy one registered version's figures from MLflow into docs/figures (the examples in docs/what-you-can-look-at.md).

Every training run logs its figures under ``figures/`` and the selection step adds the comparison
of all models under ``selection/`` (components/core/evaluation/figures.py draws both). This copies one of
each kind, shrunk losslessly (and to 256 colours when still over the size limit):

    .venv/bin/skin-cancer run --workdir /tmp/demo-run         # or with --data for real images
    .venv/bin/python scripts/export_figures.py --tracking-uri sqlite:////tmp/demo-run/mlflow.db
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = (
    "figures/val_roc.png",
    "figures/val_pr.png",
    "figures/val_confusion.png",
    "figures/val_calibration.png",
    "figures/test_calibration.png",
    "figures/training_curves.png",
    "selection/compare_val.png",
)


def shrink(data: bytes, limit: int) -> bytes:
    """Lossless PNG optimisation; a 256-colour palette only if that is still over ``limit``."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    if out.tell() > limit:
        out = io.BytesIO()
        image.convert("RGB").quantize(colors=256).save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", required=True, help="MLflow store, e.g. sqlite:////tmp/demo-run/mlflow.db")
    parser.add_argument("--model", default="skin-cancer-classifier@champion", help="NAME@ALIAS or NAME/VERSION")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    parser.add_argument("--max-kb", type=int, default=60)
    args = parser.parse_args(argv)

    import mlflow

    mlflow.set_tracking_uri(args.tracking_uri)
    client = mlflow.MlflowClient()
    if "@" in args.model:
        name, alias = args.model.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, number = args.model.split("/", 1)
        version = client.get_model_version(name, number)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for path in KINDS:
            local = Path(client.download_artifacts(version.run_id, path, tmp))
            data = shrink(local.read_bytes(), args.max_kb * 1024)
            target = out / Path(path).name
            target.write_bytes(data)
            print(f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}: {len(data) / 1024:.0f} KB")
    print(f"from {name} version {version.version} (run {version.run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
