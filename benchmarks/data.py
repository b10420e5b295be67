"""The raw images a run measures on: where they are, which ones, and copies under new keys."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from components.core.settings import CLASSES

FULL_DATA_IMAGES = 2961


def find_default_data() -> Path:
    """``../shared/data/skin-cancer`` from the working directory, else beside the repository."""
    candidates = [
        Path.cwd().parent / "shared" / "data" / "skin-cancer",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "skin-cancer",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def list_images(root: Path, limit_per_folder: int | None = None) -> list[tuple[str, Path]]:
    """``(relpath, path)`` of every image in ``{train,test}/{benign,malignant}``, sorted, optionally capped."""
    from components.core.data.dataset import RAW_SPLITS
    from components.core.data.images import has_image_extension

    items = []
    for split in RAW_SPLITS:
        for cls in CLASSES:
            folder = root / split / cls
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{folder}: missing; expected the layout {{train,test}}/{{benign,malignant}}/*.jpg"
                )
            files = sorted(p for p in folder.iterdir() if p.is_file() and has_image_extension(p.name))
            if limit_per_folder:
                files = files[:limit_per_folder]
            items += [(f"{split}/{cls}/{p.name}", p) for p in files]
    return items


def copy_key(relpath: str, copy: int) -> str:
    """``train/benign/1.jpg`` -> ``train/benign/copy1-1.jpg``: the same image under a new key."""
    folder, _, name = relpath.rpartition("/")
    return f"{folder}/copy{copy}-{name}"


def local_subset(items: list[tuple[str, Path]], root: Path) -> str:
    """Hard links (or copies) of a subset in the raw layout, for the local-folder diagnostic."""
    for rel, path in items:
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
    return str(root)
