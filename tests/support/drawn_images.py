"""Non-dermoscopy images drawn by code (flat frames, noise, text, textures, a microscopy-like
field, a drawing of a landscape...) and the photographs that installed packages ship: what the
out-of-scope detector and the image checks are tested on. They were the development set when
the detector's features were chosen
the held-out set that measures it is scikit-image's (README)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def drawn(size: int = 192, seed: int = 0) -> dict[str, np.ndarray]:
    """name -> (size, size, 3) uint8 image."""
    rng = np.random.default_rng(seed)
    out = {}
    out["noise"] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    out["gray_noise"] = np.repeat(rng.integers(0, 256, (size, size, 1), dtype=np.uint8), 3, 2)
    blur = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(6))
    out["blurred_noise"] = np.asarray(blur)
    for name, c in {
        "black": (0, 0, 0),
        "white": (255, 255, 255),
        "gray": (128, 128, 128),
        "skin_flat": (224, 172, 150),
        "blue_flat": (30, 60, 200),
    }.items():
        out["flat_" + name] = np.full((size, size, 3), c, np.uint8)
    g = np.linspace(0, 255, size, dtype=np.float32)
    out["gradient"] = np.stack(
        [np.tile(g, (size, 1)), np.tile(g[:, None], (1, size)), np.full((size, size), 128.0)], 2
    ).astype(np.uint8)
    cb = ((np.indices((size, size)) // 16).sum(0) % 2 * 255).astype(np.uint8)
    out["checkerboard"] = np.repeat(cb[..., None], 3, 2)
    st = ((np.arange(size) // 8) % 2 * 200 + 30).astype(np.uint8)
    out["stripes"] = np.stack([np.tile(st, (size, 1))] * 3, 2)
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    for i in range(12):
        d.text((5, 5 + i * 15), "Lorem ipsum dolor sit amet %d" % i, fill=(0, 0, 0))
    out["text"] = np.asarray(im)
    im = Image.new("RGB", (size, size), (240, 240, 240))
    d = ImageDraw.Draw(im)
    for i in range(15):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(10, 80, 2)
        d.rectangle([x0, y0, x0 + w, y0 + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    out["rectangles"] = np.asarray(im)
    im = Image.new("RGB", (size, size), (250, 235, 245))
    d = ImageDraw.Draw(im)
    for i in range(120):
        x, y = rng.integers(0, size, 2)
        r = rng.integers(3, 9)
        d.ellipse([x - r, y - r, x + r, y + r], fill=(int(rng.integers(90, 160)), 40, int(rng.integers(120, 190))))
    out["microscopy_like"] = np.asarray(im.filter(ImageFilter.GaussianBlur(1)))
    im = Image.new("RGB", (size, size), (20, 120, 40))
    d = ImageDraw.Draw(im)
    for i in range(300):
        x, y = rng.integers(0, size, 2)
        d.line(
            [x, y, x + rng.integers(-4, 5), y - rng.integers(5, 20)],
            fill=(int(rng.integers(20, 90)), int(rng.integers(120, 220)), 30),
            width=2,
        )
    out["grass_like"] = np.asarray(im)
    im = Image.new("RGB", (size, size), (135, 180, 235))
    d = ImageDraw.Draw(im)
    d.rectangle([0, size * 2 // 3, size, size], fill=(70, 110, 60))
    d.ellipse([120, 20, 170, 70], fill=(250, 220, 80))
    d.polygon([(30, 128), (80, 60), (130, 128)], fill=(120, 100, 90))
    out["landscape_drawing"] = np.asarray(im)
    sm = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    out["smooth_colour_field"] = np.asarray(sm)
    base = np.full((size, size, 3), (205, 150, 130), np.float32) + rng.normal(0, 12, (size, size, 1))
    out["skin_texture"] = np.clip(
        np.asarray(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))), 0, 255
    )
    dark = (np.asarray(out["noise"], np.float32) * 0.08).astype(np.uint8)
    out["too_dark"] = dark
    out["overexposed"] = np.clip(out["blurred_noise"].astype(np.int32) + 200, 0, 255).astype(np.uint8)
    return {k: np.asarray(v, np.uint8) for k, v in out.items()}


def package_photographs() -> dict[str, bytes]:
    """JPEG/PNG files that scikit-learn and matplotlib ship: a palace, a flower, a portrait, a photo of a parcel."""
    import matplotlib
    import sklearn.datasets

    sk = Path(sklearn.datasets.__file__).parent / "images"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    files = [sk / "china.jpg", sk / "flower.jpg", mpl / "grace_hopper.jpg", mpl / "Minduka_Present_Blue_Pack.png"]
    return {f.name: f.read_bytes() for f in files}


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
