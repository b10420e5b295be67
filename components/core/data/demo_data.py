"""SYNTHETIC demo data in the raw layout, so a fresh machine can run the pipeline offline.

These are drawings, not dermoscopy: benign "lesions" are round, even and one
colour; malignant ones are asymmetric, ragged and several colours. They exist
to exercise the pipeline and are learnable, nothing more. Every file and
README written here says SYNTHETIC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from components.core.settings import CLASSES

README = """SYNTHETIC demo data written by `skin-cancer demo-data`.
Not medical images. Benign = round, even, one colour; malignant = ragged, asymmetric, several colours.
"""


def _lesion(rng: np.random.Generator, malignant: bool, size: int) -> Image.Image:
    skin = rng.integers([190, 140, 110], [240, 190, 160])
    img = Image.new("RGB", (size, size), tuple(int(v) for v in skin))
    draw = ImageDraw.Draw(img)
    cx, cy = rng.uniform(0.4, 0.6, 2) * size
    radius = rng.uniform(0.18, 0.3) * size
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    if malignant:
        stretch = rng.uniform(0.6, 1.4)
        radii = radius * (1 + rng.uniform(-0.35, 0.35, angles.size)) * np.where(np.cos(angles) > 0, stretch, 1)
    else:
        radii = radius * (1 + rng.uniform(-0.04, 0.04, angles.size))
    points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles)]
    base = rng.integers([90, 50, 30], [140, 90, 60])
    draw.polygon(points, fill=tuple(int(v) for v in base))
    if malignant:  # several colours: dark, blue-grey and reddish blotches inside the lesion
        for colour in ([40, 25, 20], [90, 90, 120], [150, 60, 50]):
            for _ in range(3):
                ox, oy = rng.uniform(-0.6, 0.6, 2) * radius
                br = rng.uniform(0.1, 0.3) * radius
                draw.ellipse([cx + ox - br, cy + oy - br, cx + ox + br, cy + oy + br], fill=tuple(colour))
    img = img.filter(ImageFilter.GaussianBlur(radius=size / 160))
    noise = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def write_demo_data(
    out_dir: str,
    train_per_class: int = 80,
    test_per_class: int = 24,
    size: int = 96,
    seed: int = 0,
) -> dict[str, int]:
    """Write SYNTHETIC JPEGs under ``out_dir/{train,test}/{benign,malignant}``; returns counts."""
    rng = np.random.default_rng(seed)
    root = Path(out_dir)
    counts: dict[str, int] = {}
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _lesion(rng, bool(label), size).save(folder / f"synthetic-{i:04d}.jpg", quality=90)
            counts[f"{split}/{cls}"] = n
    (root / "README.txt").write_text(README)
    return counts
