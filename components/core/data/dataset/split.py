"""The train/validation split: the one place where it is decided which raw train image validates.

Each image's side is a function of its own key alone: SHA-256 of ``"<seed>:<relative key>"``
read as a number in [0, 1), below ``val_fraction`` means validation. Adding, removing or
renaming *other* images therefore never moves an image, so a recurring run on a growing
prefix keeps last run's validation images in validation (the champion comparison relies on
that). The key, not the content, is hashed because the side is then known from the listing
alone, before any byte is read (an unreadable file has a side too, and no second pass over the
data is needed); renaming an image itself may move it, and byte-identical copies under two keys
may fall on both sides (preprocessing reports such duplicates).

Per class this is a Bernoulli draw with probability ``val_fraction``, so it is stratified in
expectation: the realised share of each class stays within 3 standard errors,
``3 * sqrt(f (1 - f) / n)``, of ``f`` (tests/test_dataset_split.py measures it). One guard for
tiny classes: a class of two or more images never ends with none on either side; then the
image with the lowest (or highest) hash crosses over. That can only move an image while the
class is that small.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from components.core.data.dataset.layout import RawImage


def side_number(relpath: str, seed: int) -> float:
    """Where ``relpath`` falls in [0, 1): the first 8 bytes of SHA-256("<seed>:<relpath>")."""
    digest = hashlib.sha256(f"{seed}:{relpath}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(items: Sequence[RawImage], val_fraction: float, seed: int) -> tuple[list[RawImage], list[RawImage]]:
    """Split raw train images into train and validation by the hash of each key (see above)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    train: list[RawImage] = []
    val: list[RawImage] = []
    for label in sorted({i.label for i in items}):
        ranked = sorted((side_number(i.relpath, seed), i.relpath, i) for i in items if i.label == label)
        cut = sum(number < val_fraction for number, _, _ in ranked)
        if len(ranked) >= 2:
            cut = min(max(cut, 1), len(ranked) - 1)  # both sides keep at least one image of the class
        val += [i for _, _, i in ranked[:cut]]
        train += [i for _, _, i in ranked[cut:]]
    return sorted(train, key=lambda i: i.relpath), sorted(val, key=lambda i: i.relpath)
