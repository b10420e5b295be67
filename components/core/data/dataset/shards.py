"""Preprocessed splits on disk: uint8 ``.npy`` shards, labels, manifest, checksums, atomic commit.

Each preprocessed split is a directory of memory-mappable ``.npy`` shards::

    images-00000.npy   uint8 (n, size, size, 3)
    labels.npy         uint8 (N,)   benign = 0, malignant = 1
    manifest.json      counts, image size, fingerprint, shard checksums, sources

``manifest.json`` is written last and the directory is moved into place in one rename,
so a reader never mistakes a half-written split for a finished one. A split is built
in a ``.<name>.partial-<pid>`` directory beside its final place (one writer per output
directory); :func:`open_splits` refuses splits that do not belong together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from components.core.data.dataset.checks import _load_one
from components.core.data.dataset.layout import DataError, RawImage
from components.core.settings import CLASSES

log = logging.getLogger(__name__)

OUTPUT_SPLITS = ("train", "val", "test")
FORMAT = "skin-cancer-npy/v1"
DEFAULT_SHARD_SIZE = 2048


# --- writing --------------------------------------------------------------------------------------


@dataclass
class SplitReport:
    count: int
    class_counts: dict[str, int]
    skipped: list[dict] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)


@dataclass
class _Written:
    """What the shard writer produced: labels, shard entries, sources and skipped files, in order."""

    labels: list[int] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


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
    """Write one split into ``tmp`` (created afresh); on any error ``tmp`` is removed.

    Streaming: memory stays at one shard."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        written = _write_shards(items, tmp, image_size, split, shard_size, pool, progress)
        report = _write_manifest(tmp, written, image_size, split, fingerprint, extra_manifest)
    except BaseException:
        # Do not wait for a whole shard of reads (each possibly retrying) once the run has failed.
        pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pool.shutdown()
    return report


def _write_shards(
    items: Sequence[RawImage],
    tmp: Path,
    image_size: int,
    split: str,
    shard_size: int,
    pool: ThreadPoolExecutor,
    progress: bool,
) -> _Written:
    """Fetch and decode ``items`` on ``pool``, ``shard_size`` at a time, into ``images-NNNNN.npy``."""
    from tqdm import tqdm

    out = _Written()
    bar = tqdm(total=len(items), desc=f"{split:>5}", unit="img", disable=not progress)
    for start in range(0, len(items), shard_size):
        chunk = items[start : start + shard_size]
        pixels = np.empty((len(chunk), image_size, image_size, 3), dtype=np.uint8)
        n = 0
        for item, arr, digest, error, original in pool.map(lambda i: _load_one(i, image_size), chunk):
            bar.update(1)
            if error is not None:
                log.warning("skipping %s: %s", item.relpath, error)
                out.skipped.append({"key": item.relpath, "reason": error})
                continue
            pixels[n] = arr
            out.labels.append(item.label)
            source = {"key": item.relpath, "sha1": digest}
            if original is not None:  # the header decoded, so it always is for a decoded image
                source["width"], source["height"] = (int(v) for v in original)
            out.sources.append(source)
            n += 1
        if n:
            name = f"images-{len(out.shards):05d}.npy"
            out.shards.append({"file": name, "count": n, "sha256": _save_npy(tmp / name, pixels[:n])})
    bar.close()
    return out


def _write_manifest(
    tmp: Path, written: _Written, image_size: int, split: str, fingerprint: str, extra_manifest: dict | None
) -> SplitReport:
    """Write ``labels.npy``, then ``manifest.json`` (last: without it a directory is never a finished split)."""
    label_arr = np.asarray(written.labels, dtype=np.uint8)
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
        "shards": written.shards,
        "labels_sha256": _sha256(tmp / "labels.npy"),
        "sources": written.sources,
        "skipped": written.skipped,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return SplitReport(int(label_arr.size), class_counts, written.skipped, written.sources)


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


# --- partial directories and the commit -----------------------------------------------------------


def _partial_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.partial-{os.getpid()}"


def _remove_stale_partials(final: Path) -> None:
    """Partial directories a killed earlier run left beside ``final`` (one writer per output)."""
    if final.parent.is_dir():
        for stale in final.parent.glob(f".{final.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _reset_output(final: Path) -> None:
    """Remove an earlier run's split at ``final`` and its stale partials; make its parent."""
    _remove_stale_partials(final)
    shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)


def _commit(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


# --- reading --------------------------------------------------------------------------------------


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
                self._verify(root, path)
            self.shards = [
                np.load(root / s["file"], mmap_mode="r", allow_pickle=False) for s in self.manifest["shards"]
            ]
            self.labels = np.load(root / "labels.npy", allow_pickle=False)
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{path}: unreadable split ({type(err).__name__}: {err}); rerun preprocessing") from err
        counts = [len(s) for s in self.shards]
        if (
            sum(counts) != self.manifest["count"]
            or len(self.labels) != self.manifest["count"]
            or counts != [s["count"] for s in self.manifest["shards"]]
        ):
            raise DataError(f"{path}: array lengths do not match manifest count; rerun preprocessing")
        self._offsets = np.cumsum([0, *counts])
        self.image_size = int(self.manifest["image_size"])

    def _verify(self, root: Path, path: str) -> None:
        """Every shard's sha256, then the labels', against the manifest."""
        for shard in self.manifest["shards"]:
            self._check(root, path, shard["file"], shard["sha256"])
        self._check(root, path, "labels.npy", self.manifest["labels_sha256"])

    @staticmethod
    def _check(root: Path, path: str, name: str, digest: str) -> None:
        if _sha256(root / name) != digest:
            raise DataError(f"{path}/{name}: checksum mismatch; rerun preprocessing")

    def __len__(self) -> int:
        return int(self.labels.size)

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Images at ``indices`` as one uint8 array (reads only those rows)."""
        out = np.empty((len(indices), self.image_size, self.image_size, 3), dtype=np.uint8)
        shard_of = np.searchsorted(self._offsets, indices, side="right") - 1
        for pos, (s, i) in enumerate(zip(shard_of, indices)):
            out[pos] = self.shards[s][i - self._offsets[s]]
        return out

    def batches(self, size: int):
        """The images in order, ``size`` at a time (uint8 arrays): memory stays at one batch."""
        for start in range(0, len(self), size):
            yield self.gather(np.arange(start, min(start + size, len(self))))

    def images(self) -> np.ndarray:
        if len(self.shards) == 1:
            return np.asarray(self.shards[0])
        return (
            np.concatenate(self.shards) if self.shards else np.empty((0, self.image_size, self.image_size, 3), np.uint8)
        )


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
            raise DataError(
                f"{paths[0]} and {path} come from different preprocessing runs ({diff}); rerun preprocessing"
            )
    return splits
