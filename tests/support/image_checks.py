"""Checks that a PNG is a real picture: opened with Pillow, of a sensible size, not blank."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def count_near(rgb: np.ndarray, colour: np.ndarray, tolerance: int = 30) -> int:
    """Pixels within ``tolerance`` of ``colour`` in every channel."""
    return int((np.abs(rgb.astype(int) - colour).max(axis=-1) <= tolerance).sum())


def assert_not_blank(rgb: np.ndarray, max_ink: float = 0.6) -> None:
    """Not one colour, not almost empty: some share of the pixels is drawn, in many colours."""
    ink = (rgb < 200).any(axis=-1).mean()  # share of pixels that are not near-white
    assert 0.01 < ink < max_ink, ink
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20


def assert_sensible(png: bytes, min_size=(300, 250), max_size=(1200, 900), max_bytes=80_000) -> np.ndarray:
    """A figure: within the expected size in pixels and bytes, and not blank."""
    rgb = pixels(png)
    height, width = rgb.shape[:2]
    assert min_size[0] <= width <= max_size[0] and min_size[1] <= height <= max_size[1], (width, height)
    assert_not_blank(rgb)
    assert len(png) < max_bytes  # small enough for MLflow's view and the dashboard's page
    return rgb
