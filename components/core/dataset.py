"""The data set: raw layout, labels, stratified split and compact uint8 arrays.

Raw layout (the Kaggle "Skin Cancer: Malignant vs. Benign" layout)::

    <root>/{train,test}/{benign,malignant}/<name>.jpg

Each preprocessed split is a directory of memory-mappable ``.npy`` shards::

    images-00000.npy   uint8 (n, size, size, 3)
    labels.npy         uint8 (N,)   benign = 0, malignant = 1
    manifest.json      counts, image size, fingerprint, shard checksums, sources

``manifest.json`` is written last and the directory is moved into place in one
rename, so a reader never mistakes a half-written split for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from components.core import storage
from components.core.images import BadImage, decode_image, has_image_extension

log = logging.getLogger(__name__)

CLASSES = ("benign", "malignant")  # list index == integer label
RAW_SPLITS = ("train", "test")
OUTPUT_SPLITS = ("train", "val", "test")
FORMAT = "skin-cancer-npy/v1"
DEFAULT_SHARD_SIZE = 2048


class DataError(RuntimeError):
    """The data set cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class RawImage:
    uri: str
    relpath: str
    split: str
    label: int


@dataclass
class RawScan:
    data_uri: str
    images: list[RawImage]
    skipped: list[dict]
    fingerprint: str


def label_of(class_name: str) -> int:
    return CLASSES.index(class_name)


def scan_raw(data_uri: str) -> RawScan:
    """List ``data_uri``, assign splits and labels from the folder names, and check the layout."""
    objects = storage.list_objects(data_uri)
    images: list[RawImage] = []
    skipped: list[dict] = []
    seen_folders: dict[tuple[str, str], int] = {}
    for obj in objects:
        parts = obj.relpath.split("/")
        if len(parts) != 3 or parts[0] not in RAW_SPLITS or parts[1] not in CLASSES:
            continue  # READMEs and other files beside the layout are not data
        split, cls, name = parts
        seen_folders[(split, cls)] = seen_folders.get((split, cls), 0) + 1
        if not has_image_extension(name):
            skipped.append({"key": obj.relpath, "reason": "not a .jpg/.jpeg/.png file"})
            continue
        images.append(RawImage(obj.uri, obj.relpath, split, label_of(cls)))
    missing = [f"{s}/{c}" for s in RAW_SPLITS for c in CLASSES if (s, c) not in seen_folders]
    if missing:
        raise DataError(
            f"{data_uri}: missing folder(s) {', '.join(missing)}; expected the layout "
            "<root>/{train,test}/{benign,malignant}/<image>.jpg"
        )
    return RawScan(data_uri, images, skipped, storage.fingerprint(objects))


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


@dataclass
class SplitReport:
    count: int
    class_counts: dict[str, int]
    skipped: list[dict] = field(default_factory=list)


def _load_one(item: RawImage, size: int) -> tuple[RawImage, np.ndarray | None, str, str | None]:
    """Fetch and decode one image; returns (item, pixels or None, sha1 of bytes, error)."""
    try:
        data = storage.read_bytes(item.uri)
    except storage.StorageError as err:
        return item, None, "", f"unreadable: {err}"
    digest = hashlib.sha1(data).hexdigest()
    try:
        return item, decode_image(data, size), digest, None
    except BadImage as err:
        return item, None, digest, str(err)


def write_split(
    items: Sequence[RawImage],
    out_dir: str,
    image_size: int,
    split: str,
    fingerprint: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 16,
    progress: bool = False,
) -> SplitReport:
    """Fetch, decode and write one split as uint8 shards, streaming: memory stays at one shard."""
    from tqdm import tqdm

    final = Path(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    labels: list[int] = []
    sources: list[dict] = []
    shards: list[dict] = []
    skipped: list[dict] = []
    bar = tqdm(total=len(items), desc=f"{split:>5}", unit="img", disable=not progress)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(items), shard_size):
                chunk = items[start : start + shard_size]
                pixels = np.empty((len(chunk), image_size, image_size, 3), dtype=np.uint8)
                n = 0
                for item, arr, digest, error in pool.map(lambda i: _load_one(i, image_size), chunk):
                    bar.update(1)
                    if error is not None:
                        log.warning("skipping %s: %s", item.relpath, error)
                        skipped.append({"key": item.relpath, "reason": error})
                        continue
                    pixels[n] = arr
                    labels.append(item.label)
                    sources.append({"key": item.relpath, "sha1": digest})
                    n += 1
                if n:
                    name = f"images-{len(shards):05d}.npy"
                    np.save(tmp / name, pixels[:n], allow_pickle=False)
                    shards.append({"file": name, "count": n, "sha256": _sha256(tmp / name)})
        bar.close()
        label_arr = np.asarray(labels, dtype=np.uint8)
        np.save(tmp / "labels.npy", label_arr, allow_pickle=False)
        class_counts = {c: int((label_arr == i).sum()) for i, c in enumerate(CLASSES)}
        manifest = {
            "format": FORMAT,
            "split": split,
            "count": int(label_arr.size),
            "image_size": image_size,
            "classes": list(CLASSES),
            "class_counts": class_counts,
            "fingerprint": fingerprint,
            "shards": shards,
            "labels_sha256": _sha256(tmp / "labels.npy"),
            "sources": sources,
            "skipped": skipped,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SplitReport(int(label_arr.size), class_counts, skipped)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class PreprocessReport:
    data_uri: str
    image_size: int
    fingerprint: str
    splits: dict[str, dict]
    skipped: list[dict]
    total_images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.total_images / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "images_per_second": round(self.images_per_second, 1)}


def preprocess(
    data_uri: str,
    out_dirs: dict[str, str],
    image_size: int = 128,
    val_fraction: float = 0.15,
    seed: int = 42,
    max_bad_fraction: float = 0.01,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 16,
    progress: bool = False,
) -> PreprocessReport:
    """Turn the raw layout at ``data_uri`` into train/val/test uint8 splits at ``out_dirs``."""
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    started = time.perf_counter()
    scan = scan_raw(data_uri)
    for raw_split in RAW_SPLITS:
        for label, cls in enumerate(CLASSES):
            if not any(i.split == raw_split and i.label == label for i in scan.images):
                raise DataError(f"{storage.join(data_uri, raw_split, cls)}: no image files in this class")
    train_raw = [i for i in scan.images if i.split == "train"]
    test_raw = [i for i in scan.images if i.split == "test"]
    train, val = stratified_split(train_raw, val_fraction, seed)
    splits: dict[str, dict] = {}
    skipped = list(scan.skipped)
    for name, items in (("train", train), ("val", val), ("test", test_raw)):
        report = write_split(
            items, out_dirs[name], image_size, name, scan.fingerprint, shard_size, workers, progress
        )
        splits[name] = {"count": report.count, "class_counts": report.class_counts}
        skipped.extend(report.skipped)
    total = len(scan.images) + len(scan.skipped)
    if total and len(skipped) / total > max_bad_fraction:
        _remove(out_dirs.values())
        names = ", ".join(s["key"] for s in skipped[:10])
        raise DataError(
            f"{data_uri}: {len(skipped)} of {total} files are unusable "
            f"({len(skipped) / total:.1%} > max_bad_fraction {max_bad_fraction:.1%}): {names}"
            f"{' ...' if len(skipped) > 10 else ''}. Fix or remove them, or raise --max-bad-fraction."
        )
    for raw_split, out_splits in (("train", ("train", "val")), ("test", ("test",))):
        for cls in CLASSES:
            if sum(splits[s]["class_counts"][cls] for s in out_splits) == 0:
                _remove(out_dirs.values())
                raise DataError(f"{storage.join(data_uri, raw_split, cls)}: no usable images in this class")
    return PreprocessReport(
        data_uri=data_uri,
        image_size=image_size,
        fingerprint=scan.fingerprint,
        splits=splits,
        skipped=skipped,
        total_images=len(scan.images),
        seconds=time.perf_counter() - started,
    )


def _remove(paths) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


class SplitArrays:
    """A preprocessed split opened for reading: memory-mapped shards plus labels."""

    def __init__(self, path: str, verify: bool = True):
        root = Path(path)
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise DataError(f"{path}: no manifest.json; this is not a finished preprocessed split")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise DataError(f"{path}: unknown format {self.manifest.get('format')!r}, expected {FORMAT}")
        if verify:
            for shard in self.manifest["shards"]:
                if _sha256(root / shard["file"]) != shard["sha256"]:
                    raise DataError(f"{path}/{shard['file']}: checksum mismatch; rerun preprocessing")
        self.shards = [np.load(root / s["file"], mmap_mode="r", allow_pickle=False) for s in self.manifest["shards"]]
        self.labels = np.load(root / "labels.npy", allow_pickle=False)
        counts = [len(s) for s in self.shards]
        if sum(counts) != self.manifest["count"] or len(self.labels) != self.manifest["count"]:
            raise DataError(f"{path}: array lengths do not match manifest count; rerun preprocessing")
        self._offsets = np.cumsum([0, *counts])
        self.image_size = int(self.manifest["image_size"])

    def __len__(self) -> int:
        return int(self.labels.size)

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Images at ``indices`` as one uint8 array (reads only those rows)."""
        out = np.empty((len(indices), self.image_size, self.image_size, 3), dtype=np.uint8)
        shard_of = np.searchsorted(self._offsets, indices, side="right") - 1
        for pos, (s, i) in enumerate(zip(shard_of, indices)):
            out[pos] = self.shards[s][i - self._offsets[s]]
        return out

    def images(self) -> np.ndarray:
        if len(self.shards) == 1:
            return np.asarray(self.shards[0])
        return np.concatenate(self.shards) if self.shards else np.empty((0, self.image_size, self.image_size, 3), np.uint8)
