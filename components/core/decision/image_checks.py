"""Plain checks that can explain a refusal to a person, before any model is asked.

Limits are fixed, not fitted: each is far outside what dermoscopy looks like. On the 2,961
real ISIC-derived images (docs/referral.md) luminance spread is at least 5.8,
mean luminance between 33.7 and 223.2, mean colourfulness at least 9.9, and every side 224 px:
none of them trips a check.
"""

from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights of R, G, B: an image's grey level (also evaluation/subgroups.py's brightness)
LUMA = (0.299, 0.587, 0.114)
MIN_SIDE = 32  # px: below this there is no lesion structure left to judge (dermoscopy is hundreds of px)
BLANK_STD = 3.0  # luminance standard deviation (0-255): a flat frame, a lens cap, a blank scan
NO_COLOUR = 5.0  # mean of max(R,G,B) - min(R,G,B): greyscale (an X-ray, a scan of text)
TOO_DARK = 20.0  # mean luminance
TOO_BRIGHT = 240.0

# check -> what a clinician reads
PROBLEMS = {
    "too_small": "the image is too small to judge (under {min_side} pixels on a side)",
    "blank": "the image is blank or nearly uniform",
    "no_colour": "the image has no colour (greyscale), unlike a dermoscopic photograph",
    "too_dark": "the image is too dark",
    "too_bright": "the image is overexposed",
}


def image_problems(pixels: np.ndarray, original_size: tuple[int, int] | None = None) -> list[str]:
    """Names of the checks (keys of :data:`PROBLEMS`) that ``pixels`` (``(h, w, 3)`` uint8, as
    the model sees it) fails; ``original_size`` is the file's own (width, height)."""
    problems = []
    if original_size is not None and min(original_size) < MIN_SIDE:
        problems.append("too_small")
    rgb = pixels.astype(np.float32)
    luminance = rgb @ np.array(LUMA, np.float32)
    if luminance.std() < BLANK_STD:
        problems.append("blank")
    # the channels' max and min element by element: the same numbers as rgb.max(-1) and
    # rgb.min(-1), without numpy's slow reduction over an axis of 3 (half of batch scoring's
    # per-image checks; issue 32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if float((np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).mean()) < NO_COLOUR:
        problems.append("no_colour")
    mean = float(luminance.mean())
    if mean < TOO_DARK:
        problems.append("too_dark")
    elif mean > TOO_BRIGHT:
        problems.append("too_bright")
    return problems


def describe(problem: str) -> str:
    return PROBLEMS[problem].format(min_side=MIN_SIDE)
