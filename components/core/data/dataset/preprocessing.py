"""The preprocessing run: raw layout in, train/val/test uint8 splits out, all or nothing.

:func:`preprocess` first removes the outputs of any earlier run, builds all three splits
in ``.<name>.partial-<pid>`` directories, and renames them into place only after every
check passed; a run killed at any point leaves no complete-looking mixture of old and
new splits. One writer per output directory.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from components.core.data.dataset import checks
from components.core.data.dataset.layout import RawImage, RawScan, scan_raw
from components.core.data.dataset.shards import (
    DEFAULT_SHARD_SIZE,
    OUTPUT_SPLITS,
    _build_split,
    _commit,
    _partial_dir,
    _reset_output,
)
from components.core.data.dataset.split import hash_split
from components.core.settings import IMAGE_SIZE, MAX_BAD_FRACTION, SEED, VAL_FRACTION

log = logging.getLogger(__name__)


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


@dataclass
class _Built:
    """The splits written to their partial directories: counts, sources and every skipped file."""

    splits: dict[str, dict]
    sources: dict[str, list[dict]]
    skipped: list[dict]


def preprocess(
    data_uri: str,
    out_dirs: dict[str, str],
    image_size: int = IMAGE_SIZE,
    val_fraction: float = VAL_FRACTION,
    seed: int = SEED,
    max_bad_fraction: float = MAX_BAD_FRACTION,
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
    checks.require_every_class(scan)
    plan = _plan(scan, val_fraction, seed)
    finals = _clear_outputs(out_dirs)
    partials = {name: _partial_dir(final) for name, final in finals.items()}
    try:
        built = _build_all(
            plan,
            partials,
            scan,
            image_size,
            shard_size,
            workers,
            progress,
            {"val_fraction": val_fraction, "seed": seed},
        )
        checks.require_usable_classes(data_uri, plan, built.splits)
        checks.check_bad_fraction(data_uri, built.skipped, len(scan.images) + len(scan.skipped), max_bad_fraction)
        found = _check_contents(data_uri, built, allow_leakage)
        for name in OUTPUT_SPLITS:
            _commit(partials[name], finals[name])
    except BaseException:
        for path in (*partials.values(), *finals.values()):
            shutil.rmtree(path, ignore_errors=True)
        raise
    return PreprocessReport(
        data_uri,
        image_size,
        scan.fingerprint,
        built.splits,
        built.skipped,
        len(scan.images),
        time.perf_counter() - started,
        **found,
    )


def _plan(scan: RawScan, val_fraction: float, seed: int) -> dict[str, list[RawImage]]:
    """The images of each output split: raw train split into train and val, raw test as it is."""
    train, val = hash_split([i for i in scan.images if i.split == "train"], val_fraction, seed)
    return {"train": train, "val": val, "test": [i for i in scan.images if i.split == "test"]}


def _clear_outputs(out_dirs: dict[str, str]) -> dict[str, Path]:
    """Invalidate earlier outputs before any work: a killed run must not leave old splits
    beside new ones (or old ones that look like this run's result)."""
    finals = {name: Path(out_dirs[name]) for name in OUTPUT_SPLITS}
    for final in finals.values():
        _reset_output(final)
    return finals


def _build_all(
    plan: dict[str, list[RawImage]],
    partials: dict[str, Path],
    scan: RawScan,
    image_size: int,
    shard_size: int,
    workers: int,
    progress: bool,
    extra: dict,
) -> _Built:
    """Write every split of ``plan`` into its partial directory."""
    built = _Built({}, {}, list(scan.skipped))
    for name, items in plan.items():
        report = _build_split(
            items, partials[name], image_size, name, scan.fingerprint, shard_size, workers, progress, extra
        )
        built.splits[name] = {"count": report.count, "class_counts": report.class_counts}
        built.sources[name] = report.sources
        built.skipped.extend(report.skipped)
    return built


def _check_contents(data_uri: str, built: _Built, allow_leakage: bool) -> dict:
    """Duplicates, leakage (fatal unless allowed) and class balance; logs the warnings.

    Returns the report's fields for them: duplicates, leakage, class_balance, warnings."""
    duplicates = checks.find_duplicates(built.sources)
    leaked = checks.leakage_groups(duplicates)
    warnings = checks._check_duplicates(data_uri, duplicates, leaked, allow_leakage)
    balance = {name: checks.class_balance(v["class_counts"]) for name, v in built.splits.items()}
    warnings += checks.imbalance_warnings(balance)
    for w in warnings:
        log.warning("%s", w)
    log.info(
        "class balance: %s",
        ", ".join(f"{n} {b['malignant_fraction']:.1%} malignant (ratio {b['ratio']})" for n, b in balance.items()),
    )
    return {
        "duplicates": duplicates,
        "leakage": leaked if allow_leakage else [],
        "class_balance": balance,
        "warnings": warnings,
    }
