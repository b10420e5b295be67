"""The one image decoder: bytes in, a square uint8 RGB array out.

Preprocessing, ``skin-cancer predict`` and the inference server all call
:func:`decode_image`, so training and serving see pixels made the same way.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
# Dermoscopy images are a few megapixels at most; anything far larger is refused
# before decoding so a small compressed file cannot expand into gigabytes.
MAX_PIXELS = 40_000_000


class BadImage(ValueError):
    """The bytes are not a usable image; the message says why."""


def has_image_extension(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def original_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file's header, without decoding it; None when unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def decode_image(data: bytes, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG bytes (any mode: L, RGBA, CMYK, P...) to ``(size, size, 3)`` uint8 RGB.

    Raises :class:`BadImage` for empty, truncated, non-image or oversized input.
    """
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in {"JPEG", "PNG", "MPO"}:
                raise BadImage(f"unsupported image format {im.format}; use JPEG or PNG")
            width, height = im.size
            if width * height > max_pixels:
                raise BadImage(
                    f"image is {width}x{height} = {width * height:,} pixels, over the "
                    f"{max_pixels:,} limit (possible decompression bomb)"
                )
            # JPEG DCT scaling: decode straight at >= the target size, much faster than full size.
            im.draft("RGB", (size, size))
            im.load()
            rgb = im.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except BadImage:
        raise
    except Image.DecompressionBombError as err:
        raise BadImage(f"decompression bomb refused: {err}") from err
    except UnidentifiedImageError as err:
        raise BadImage("not an image (unrecognised format)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage(f"corrupt or truncated image: {err}") from err
