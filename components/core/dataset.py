"""The data set: raw layout, labels, stratified split and compact uint8 arrays.

Raw layout (the Kaggle "Skin Cancer: Malignant vs. Benign" layout)::

    <root>/{train,test}/{benign,malignant}/<name>.jpg

Each preprocessed split is a directory of memory-mappable ``.npy`` shards::

    images-00000.npy   uint8 (n, size, size, 3)
    labels.npy         uint8 (N,)   benign = 0, malignant = 1
    manifest.json      counts, image size, fingerprint, shard checksums, sources

``manifest.json`` is written last and the directory is moved into place in one
rename, so a reader never mistakes a half-written split for a finished one.
:func:`preprocess` first removes the outputs of any earlier run, builds all three
splits in ``.<name>.partial-<pid>`` directories, and renames them into place only
after every check passed; a run killed at any point leaves no complete-looking
mixture of old and new splits, and :func:`open_splits` refuses splits that do not
belong together. One writer per output directory.

Checks beyond bad files: the same image bytes (SHA-1) in test and in train/val is
leakage and fails the run unless ``allow_leakage``; duplicates between train and
val, or inside one split, are reported as warnings; the class balance of each
split is reported.
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
# A split whose larger class is this many times the smaller one gets a warning.
IMBALANCE_WARN_RATIO = 1.5


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
    sources: list[dict] = field(default_factory=list)


def _load_one(item: RawImage, size: int) -> tuple[RawImage, np.ndarray | None, str, str | None]:
    """Fetch and decode one image; returns (item, pixels or None, sha1 of bytes, decode error).

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
    try:
        return item, decode_image(data, size), digest, None
    except BadImage as err:
        return item, None, digest, str(err)


def _partial_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.partial-{os.getpid()}"


def _remove_stale_partials(final: Path) -> None:
    """Partial directories a killed earlier run left beside ``final`` (one writer per output)."""
    if final.parent.is_dir():
        for stale in final.parent.glob(f".{final.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _commit(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def write_split(
    items: Sequence[RawImage],
    out_dir: str,
    image_size: int,
    split: str,
    fingerprint: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 16,
    progress: bool = False,
    extra_manifest: dict | None = None,
) -> SplitReport:
    """Fetch, decode and write one split as uint8 shards, streaming: memory stays at one shard.

    The split is built in a ``.partial`` directory and renamed into place when complete."""
    final = Path(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_dir(final)
    report = _build_split(items, tmp, image_size, split, fingerprint, shard_size, workers, progress, extra_manifest)
    try:
        _commit(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _build_split(
    items: Sequence[RawImage],
    tmp: Path,
    image_size: int,
    split: str,
    fingerprint: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 16,
    progress: bool = False,
    extra_manifest: dict | None = None,
) -> SplitReport:
    """Write one split into ``tmp`` (created afresh); on any error ``tmp`` is removed."""
    from tqdm import tqdm

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    labels: list[int] = []
    sources: list[dict] = []
    shards: list[dict] = []
    skipped: list[dict] = []
    bar = tqdm(total=len(items), desc=f"{split:>5}", unit="img", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
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
                shards.append({"file": name, "count": n, "sha256": _save_npy(tmp / name, pixels[:n])})
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
            **(extra_manifest or {}),
            "shards": shards,
            "labels_sha256": _sha256(tmp / "labels.npy"),
            "sources": sources,
            "skipped": skipped,
        }
        # Written last: a directory without manifest.json is never a finished split.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    except BaseException:
        # Do not wait for a whole shard of reads (each possibly retrying) once the run has failed.
        pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pool.shutdown()
    return SplitReport(int(label_arr.size), class_counts, skipped, sources)


class _HashingFile:
    """A write-only file that hashes what passes through it: a shard's checksum without reading it back."""

    def __init__(self, fh):
        self.fh, self.hash = fh, hashlib.sha256()

    def write(self, data) -> int:
        self.hash.update(data)
        return self.fh.write(data)


def _save_npy(path: Path, array: np.ndarray) -> str:
    """``np.save`` (no pickle) that returns the file's sha256, computed while writing."""
    with open(path, "wb") as fh:
        out = _HashingFile(fh)
        np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)
    return out.hash.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
            groups.append({
                "sha1": digest,
                "keys": [k for _, k in members],
                "splits": sorted({s for s, _ in members}),
            })
    return sorted(groups, key=lambda g: g["keys"][0])


def leakage_groups(duplicates: list[dict]) -> list[dict]:
    """The duplicate groups that put one image in test and in train or val."""
    return [g for g in duplicates if "test" in g["splits"] and ({"train", "val"} & set(g["splits"]))]


def class_balance(class_counts: dict[str, int]) -> dict:
    """Share of malignant images and the majority/minority ratio (None when a class is empty)."""
    total = sum(class_counts.values())
    smallest, largest = min(class_counts.values()), max(class_counts.values())
    return {
        "malignant_fraction": round(class_counts.get("malignant", 0) / total, 4) if total else 0.0,
        "ratio": round(largest / smallest, 3) if smallest else None,
        "majority": max(class_counts, key=class_counts.get) if total else None,
    }


@dataclass
class PreprocessReport:
    data_uri: str
    image_size: int
    fingerprint: str
    splits: dict[str, dict]
    skipped: list[dict]
    total_images: int
    seconds: float
    # Identical images (by content) across or inside splits; ``leakage`` holds those that
    # join test with train/val (only present when allowed, else the run failed).
    duplicates: list[dict] = field(default_factory=list)
    leakage: list[dict] = field(default_factory=list)
    class_balance: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

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
    allow_leakage: bool = False,
) -> PreprocessReport:
    """Turn the raw layout at ``data_uri`` into train/val/test uint8 splits at ``out_dirs``.

    All three splits are built in ``.partial`` directories and renamed into place only
    after every check passed; any earlier outputs at ``out_dirs`` are removed first, so a
    run that fails or is killed leaves nothing that looks finished.
    """
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
    finals = {name: Path(out_dirs[name]) for name in OUTPUT_SPLITS}
    # Invalidate earlier outputs before any work: a killed run must not leave old splits
    # beside new ones (or old ones that look like this run's result).
    for final in finals.values():
        _remove_stale_partials(final)
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
    partials = {name: _partial_dir(final) for name, final in finals.items()}
    extra = {"val_fraction": val_fraction, "seed": seed}
    try:
        splits: dict[str, dict] = {}
        sources: dict[str, list[dict]] = {}
        skipped = list(scan.skipped)
        for name, items in (("train", train), ("val", val), ("test", test_raw)):
            report = _build_split(
                items, partials[name], image_size, name, scan.fingerprint, shard_size, workers, progress, extra
            )
            splits[name] = {"count": report.count, "class_counts": report.class_counts}
            sources[name] = report.sources
            skipped.extend(report.skipped)
        total = len(scan.images) + len(scan.skipped)
        if total and len(skipped) / total > max_bad_fraction:
            names = ", ".join(s["key"] for s in skipped[:10])
            raise DataError(
                f"{data_uri}: {len(skipped)} of {total} files are unusable "
                f"({len(skipped) / total:.1%} > max_bad_fraction {max_bad_fraction:.1%}): {names}"
                f"{' ...' if len(skipped) > 10 else ''}. Fix or remove them, or raise --max-bad-fraction."
            )
        for raw_split, out_splits in (("train", ("train", "val")), ("test", ("test",))):
            for cls in CLASSES:
                if sum(splits[s]["class_counts"][cls] for s in out_splits) == 0:
                    raise DataError(f"{storage.join(data_uri, raw_split, cls)}: no usable images in this class")
        duplicates = find_duplicates(sources)
        leaked = leakage_groups(duplicates)
        warnings = _check_duplicates(data_uri, duplicates, leaked, allow_leakage)
        balance = {name: class_balance(v["class_counts"]) for name, v in splits.items()}
        for name, b in balance.items():
            if b["ratio"] is None or b["ratio"] > IMBALANCE_WARN_RATIO:
                warnings.append(
                    f"class imbalance in {name}: {b['majority']} outnumbers the other class {b['ratio']} to 1 "
                    f"(malignant fraction {b['malignant_fraction']:.1%})"
                )
        for w in warnings:
            log.warning("%s", w)
        log.info("class balance: %s", ", ".join(
            f"{n} {b['malignant_fraction']:.1%} malignant (ratio {b['ratio']})" for n, b in balance.items()))
        for name in OUTPUT_SPLITS:
            _commit(partials[name], finals[name])
    except BaseException:
        for path in (*partials.values(), *finals.values()):
            shutil.rmtree(path, ignore_errors=True)
        raise
    return PreprocessReport(
        data_uri=data_uri,
        image_size=image_size,
        fingerprint=scan.fingerprint,
        splits=splits,
        skipped=skipped,
        total_images=len(scan.images),
        seconds=time.perf_counter() - started,
        duplicates=duplicates,
        leakage=leaked if allow_leakage else [],
        class_balance=balance,
        warnings=warnings,
    )


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
        warnings.append(f"{len(others)} group(s) of byte-identical images (train/val or within one split): "
                        f"{show(others)}")
    return warnings


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
        try:
            if verify:
                for name in [s["file"] for s in self.manifest["shards"]] + ["labels.npy"]:
                    expected = (self.manifest["labels_sha256"] if name == "labels.npy" else
                                next(s["sha256"] for s in self.manifest["shards"] if s["file"] == name))
                    if _sha256(root / name) != expected:
                        raise DataError(f"{path}/{name}: checksum mismatch; rerun preprocessing")
            self.shards = [np.load(root / s["file"], mmap_mode="r", allow_pickle=False)
                           for s in self.manifest["shards"]]
            self.labels = np.load(root / "labels.npy", allow_pickle=False)
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{path}: unreadable split ({type(err).__name__}: {err}); rerun preprocessing") from err
        counts = [len(s) for s in self.shards]
        if (sum(counts) != self.manifest["count"] or len(self.labels) != self.manifest["count"]
                or counts != [s["count"] for s in self.manifest["shards"]]):
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


def open_splits(*paths: str, verify: bool = True) -> list[SplitArrays]:
    """Open splits that must come from one preprocessing run: same data fingerprint,
    image size, seed and validation fraction. Refuses a mixture (a killed or partial
    rerun) with a :class:`DataError` instead of training on it."""
    splits = [SplitArrays(p, verify=verify) for p in paths]
    keys = ("fingerprint", "image_size", "seed", "val_fraction")
    first = {k: splits[0].manifest.get(k) for k in keys}
    for path, split in zip(paths[1:], splits[1:]):
        other = {k: split.manifest.get(k) for k in keys}
        if other != first:
            diff = ", ".join(f"{k} {first[k]!r} vs {other[k]!r}" for k in keys if first[k] != other[k])
            raise DataError(f"{paths[0]} and {path} come from different preprocessing runs ({diff}); "
                            "rerun preprocessing")
    return splits
