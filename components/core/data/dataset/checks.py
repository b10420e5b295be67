"""What makes the data unusable or suspect: bad files, empty classes, duplicates, leakage, imbalance.

The bad-file rule: only bytes that do not decode make a bad file (skipped and named); more
than ``max_bad_fraction`` of them fails the run. Beyond bad files: the same image bytes
(SHA-1) in test and in train/val is leakage and fails the run unless allowed; duplicates
between train and val, or inside one split, are warnings; the class balance of each split
is reported, with a warning above :data:`IMBALANCE_WARN_RATIO`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from components.core.data import storage
from components.core.data.dataset.layout import RAW_SPLITS, DataError, RawImage, RawScan
from components.core.data.images import BadImage, decode_image, original_size
from components.core.settings import CLASSES

# A split whose larger class is this many times the smaller one gets a warning.
IMBALANCE_WARN_RATIO = 1.5


# --- bad files and empty classes ----------------------------------------------------------------


def _load_one(item: RawImage, size: int) -> tuple[RawImage, np.ndarray | None, str, str | None, tuple[int, int] | None]:
    """Fetch and decode one image; returns (item, pixels or None, sha1 of bytes, decode error,
    original (width, height) from the file's header or None).

    Only bytes that do not decode make a "bad file". A read that still fails after the
    storage layer's retries (network down, throttled for too long, object vanished,
    permission denied) raises :class:`storage.StorageError`: silently dropping the image
    would lose data, so the run stops instead.
    """
    try:
        data = storage.read_bytes(item.uri)
    except storage.StorageError as err:
        raise storage.StorageError(
            f"{err}. Preprocessing stopped: an object that cannot be read is never skipped as a bad "
            "image (that would drop data silently); rerun once S3 is reachable"
        ) from err
    digest = hashlib.sha1(data).hexdigest()
    # The size before resizing: the acquisition device shows in it (evaluation/subgroups.py).
    original = original_size(data)
    try:
        return item, decode_image(data, size), digest, None, original
    except BadImage as err:
        return item, None, digest, str(err), original


def check_bad_fraction(data_uri: str, skipped: list[dict], total: int, max_bad_fraction: float) -> None:
    """Fail when more than ``max_bad_fraction`` of the ``total`` files listed are unusable."""
    if total and len(skipped) / total > max_bad_fraction:
        names = ", ".join(s["key"] for s in skipped[:10])
        raise DataError(
            f"{data_uri}: {len(skipped)} of {total} files are unusable "
            f"({len(skipped) / total:.1%} > max_bad_fraction {max_bad_fraction:.1%}): {names}"
            f"{' ...' if len(skipped) > 10 else ''}. Fix or remove them, or raise --max-bad-fraction."
        )


def require_every_class(scan: RawScan) -> None:
    """Every raw split needs image files of every class (before any is read)."""
    for raw_split in RAW_SPLITS:
        for label, cls in enumerate(CLASSES):
            if not any(i.split == raw_split and i.label == label for i in scan.images):
                raise DataError(f"{storage.join(scan.data_uri, raw_split, cls)}: no image files in this class")


def require_usable_classes(data_uri: str, plan: dict[str, list], splits: dict[str, dict]) -> None:
    """Every output split needs usable images of every class (after bad files were skipped):
    training needs both classes, and so do the threshold and AUC on validation and the test
    report. Checked here, before any library sees the labels, with the counts that explain it."""
    for split, items in plan.items():
        raw_split = "test" if split == "test" else "train"
        for label, cls in enumerate(CLASSES):
            files = sum(1 for i in items if i.label == label)
            usable = splits[split]["class_counts"][cls]
            if usable == 0:
                where = storage.join(data_uri, raw_split, cls)
                hint = (
                    "add images of this class"
                    if split == "test"
                    else "add images of this class, or raise val_fraction"
                    if split == "val" and files == 0
                    else "add readable images of this class"
                )
                raise DataError(
                    f"{where}: no usable image for the {split} split ({files} file(s) assigned to it, "
                    f"{files - usable} unreadable, {usable} usable); {hint}"
                )


# --- duplicates and leakage -----------------------------------------------------------------------


def find_duplicates(split_sources: dict[str, list[dict]]) -> list[dict]:
    """Groups of images with identical bytes (same SHA-1), with the splits they are in."""
    by_hash: dict[str, list[tuple[str, str]]] = {}
    for split, sources in split_sources.items():
        for src in sources:
            by_hash.setdefault(src["sha1"], []).append((split, src["key"]))
    groups = []
    for digest, members in sorted(by_hash.items()):
        if len(members) > 1:
            members.sort(key=lambda m: m[1])
            groups.append(
                {
                    "sha1": digest,
                    "keys": [k for _, k in members],
                    "splits": sorted({s for s, _ in members}),
                }
            )
    return sorted(groups, key=lambda g: g["keys"][0])


def leakage_groups(duplicates: list[dict]) -> list[dict]:
    """The duplicate groups that put one image in test and in train or val."""
    return [g for g in duplicates if "test" in g["splits"] and ({"train", "val"} & set(g["splits"]))]


def _check_duplicates(data_uri: str, duplicates: list[dict], leaked: list[dict], allow_leakage: bool) -> list[str]:
    """Fail on test/train-or-val leakage (unless allowed); return warnings for the rest.

    Duplicates between train and val (or inside one split) only inflate validation or
    weight an image twice; they are reported, not fatal. Test must be unseen."""

    def show(groups: list[dict]) -> str:
        def one(g: dict) -> str:
            more = len(g["keys"]) - 4
            return " = ".join(g["keys"][:4]) + (f" (+{more} more)" if more > 0 else "")

        text = "; ".join(one(g) for g in groups[:10])
        return text + (f"; ... ({len(groups)} groups)" if len(groups) > 10 else "")

    if leaked and not allow_leakage:
        raise DataError(
            f"{data_uri}: leakage: {len(leaked)} test image(s) have byte-identical copies in train/val: "
            f"{show(leaked)}. Remove the copies, or pass --allow-leakage (pipeline: allow_leakage=True) "
            "to accept optimistic test figures."
        )
    warnings = []
    if leaked:
        warnings.append(f"leakage allowed by flag: {len(leaked)} test image(s) also in train/val: {show(leaked)}")
    others = [g for g in duplicates if g not in leaked]
    if others:
        warnings.append(
            f"{len(others)} group(s) of byte-identical images (train/val or within one split): {show(others)}"
        )
    return warnings


# --- class balance --------------------------------------------------------------------------------


def class_balance(class_counts: dict[str, int]) -> dict:
    """Share of malignant images and the majority/minority ratio (None when a class is empty)."""
    total = sum(class_counts.values())
    smallest, largest = min(class_counts.values()), max(class_counts.values())
    return {
        "malignant_fraction": round(class_counts.get("malignant", 0) / total, 4) if total else 0.0,
        "ratio": round(largest / smallest, 3) if smallest else None,
        "majority": max(class_counts, key=class_counts.get) if total else None,
    }


def imbalance_warnings(balance: dict[str, dict]) -> list[str]:
    """A warning for each split whose classes are further apart than :data:`IMBALANCE_WARN_RATIO`."""
    return [
        f"class imbalance in {name}: {b['majority']} outnumbers the other class {b['ratio']} to 1 "
        f"(malignant fraction {b['malignant_fraction']:.1%})"
        for name, b in balance.items()
        if b["ratio"] is None or b["ratio"] > IMBALANCE_WARN_RATIO
    ]
