"""The train/validation split: the one place where it is decided which raw train image validates."""

from __future__ import annotations

from typing import Sequence

from components.core.dataset.layout import RawImage


def stratified_split(
    items: Sequence[RawImage], val_fraction: float, seed: int
) -> tuple[list[RawImage], list[RawImage]]:
    """Split raw train images into train and validation, stratified by label, seeded."""
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    ordered = sorted(items, key=lambda i: i.relpath)
    labels = [i.label for i in ordered]
    train, val = train_test_split(ordered, test_size=val_fraction, stratify=labels, random_state=seed)
    return sorted(train, key=lambda i: i.relpath), sorted(val, key=lambda i: i.relpath)
