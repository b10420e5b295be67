"""The one image decoder: modes, formats and bad bytes."""

import io

import numpy as np
import pytest
from PIL import Image

from components.core.data.images import BadImage, decode_image, has_image_extension


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "CMYK", "P"])
def test_modes_convert_to_rgb_uint8(mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    fmt = "JPEG" if mode in ("RGB", "L", "CMYK") else "PNG"
    out = decode_image(encode(img, fmt), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_colour_survives_decode():
    out = decode_image(encode(Image.new("RGB", (64, 64), (220, 30, 30)), "PNG"), 32)
    assert tuple(out[16, 16]) == (220, 30, 30)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not an image"),
        (encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")[:200], "truncated"),
        (encode(Image.new("RGB", (8, 8)), "GIF"), "unsupported image format GIF"),
    ],
)
def test_bad_bytes_raise_clear_error(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_image(data, 16)


def test_decompression_bomb_refused_before_decoding():
    bomb = encode(Image.new("1", (9000, 9000)), "PNG")  # 81 Mpx in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_image(bomb, 16)


@pytest.mark.parametrize(
    "name, ok",
    [
        ("a.jpg", True),
        ("A.JPG", True),
        ("b.jpeg", True),
        ("c.PNG", True),
        ("d.gif", False),
        ("e.txt", False),
        ("noext", False),
    ],
)
def test_extensions_any_case(name, ok):
    assert has_image_extension(name) is ok
