"""Batch scoring: every file under a prefix gets one row, each image is scored once per model version.

Listing and reading go through the project's storage layer (local or S3). An image is skipped
when a row with its content SHA-256 and this model version is already in a predictions file
under the output prefix (so nothing is scored twice and nothing new is skipped, whatever the
key). The rest are read, hashed and decoded ``batch`` at a time and scored with one forward
pass per batch (:meth:`Predictor.predict_pixels`: the stored decision policy decides); only
the rows (a few numbers each) are kept, so memory stays flat as the number of images grows.

A file that cannot be read or decoded is a row with ``error`` set, never the end of the run;
the run fails only when more than ``max_bad_fraction`` of the files are unusable, naming them.
A read failure (no bytes) leaves ``sha256`` empty, so the next run tries the file again; a
file that was read but is not an image keeps its hash and is not tried again.

Rows are written as one Parquet file per run (``predictions/<run>.parquet``) with a single
write (a rename locally, one PUT on S3): a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from components.core.data import storage
from components.core.data.images import BadImage, decode_image, original_size
from components.core.settings import SCORE_BATCH, SCORING_MAX_BAD_FRACTION

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
COLUMNS = (
    "key",
    "sha256",
    "model_name",
    "model_version",
    "p_malignant",
    "label",
    "decision",
    "refer_reason",
    "error",
    "scored_at",
)


class TooManyBadFiles(RuntimeError):
    """More unusable files than ``max_bad_fraction`` allows; the message names them."""


def schema():
    import pyarrow as pa

    text = pa.string()
    return pa.schema(
        [
            ("key", text),
            ("sha256", text),
            ("model_name", text),
            ("model_version", text),
            ("p_malignant", pa.float64()),
            ("label", text),
            ("decision", text),
            ("refer_reason", text),
            ("error", text),
            ("scored_at", pa.timestamp("us", tz="UTC")),
            ("input_features", pa.list_(pa.float32())),
            # Not in COLUMNS: files written before it have no such column (read them whole).
            ("prediction_set", pa.list_(text)),
        ]
    )


@dataclass
class ScoreResult:
    rows: list[dict] = field(default_factory=list)
    already_scored: int = 0
    listed: int = 0

    @property
    def errors(self) -> list[dict]:
        return [r for r in self.rows if r["error"]]


def list_inputs(data_uri: str, out_uri: str | None = None) -> list[str]:
    """Every file under ``data_uri`` (full URIs, sorted), leaving out the output prefix when it
    lies inside the data prefix, and hidden files (names starting with a dot)."""

    def where(uri: str) -> str:  # one spelling per place: ./a, a and /abs/a are the same folder
        return uri if storage.is_s3(uri) else os.path.abspath(uri)

    out = where(out_uri).rstrip("/") + "/" if out_uri else None
    return [
        o.uri
        for o in storage.list_objects(data_uri)
        if not (out and where(o.uri).startswith(out)) and not o.relpath.rsplit("/", 1)[-1].startswith(".")
    ]


def prediction_files(out_uri: str) -> list[str]:
    prefix = storage.join(out_uri, PREDICTIONS_DIR)
    try:
        objects = storage.list_objects(prefix)
    except storage.StorageError:
        return []  # no predictions yet (a local prefix that does not exist)
    return [o.uri for o in objects if o.relpath.endswith(".parquet")]


def read_files(uris: list[str], columns: list[str] | None = None) -> list[dict]:
    """The rows of these predictions files (``columns`` only, when given)."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for uri in uris:
        rows += pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=columns).to_pylist()
    return rows


def read_rows(out_uri: str, columns: list[str] | None = None) -> list[dict]:
    """Every row written under ``out_uri`` so far (``columns`` only, when given)."""
    return read_files(prediction_files(out_uri), columns)


def scored_hashes(out_uri: str, model_name: str, model_version: str) -> set[str]:
    """Content hashes this model version already has a row for."""
    return {
        r["sha256"]
        for r in read_rows(out_uri, ["sha256", "model_name", "model_version"])
        if r["sha256"] and r["model_name"] == model_name and r["model_version"] == model_version
    }


def _read(uri: str) -> tuple[bytes | None, str | None]:
    try:
        return storage.read_bytes(uri), None
    except (storage.StorageError, OSError) as err:
        return None, f"could not read: {err}"


def score_uris(
    predictor,
    uris: list[str],
    out_uri: str,
    inputs=None,
    batch: int = SCORE_BATCH,
    known: set[str] | None = None,
    data_uri: str = "",
) -> ScoreResult:
    """Rows for the files in ``uris`` that this model version has not scored. ``inputs``: maps a
    batch's pixels and ImageNet features to what the rows keep for input monitoring
    (drift.InputAxes.inputs);
    ``known``: hashes already scored (default: read from ``out_uri``); ``data_uri``: keys are
    relative to it. The next batch is read and decoded in a thread while this one's forward
    passes run (TensorFlow releases the GIL), so the model waits less on the files; and a
    batch's decisions and monitoring numbers are worked out in another thread while the next
    batch's forward passes run (one batch at a time: memory stays that of two batches)."""
    from concurrent.futures import ThreadPoolExecutor

    known = set(scored_hashes(out_uri, predictor.model_name, predictor.model_version) if known is None else known)
    result = ScoreResult(listed=len(uris))
    base = data_uri.rstrip("/") + "/" if data_uri else ""

    def prepare(chunk: list[str]) -> tuple[list[dict], list[tuple[dict, np.ndarray, tuple | None]], int]:
        """Read, hash and decode ``chunk``: (rows with an error, rows to score with their pixels
        and file size, how many were scored before). One worker: chunks are prepared in order,
        and only the main thread touches ``result``, so the rows' order is the files' order."""
        failed, pending, skipped = [], [], 0
        for uri in chunk:
            row = {
                "key": uri[len(base) :] if base and uri.startswith(base) else uri,
                "sha256": None,
                "model_name": predictor.model_name,
                "model_version": predictor.model_version,
                "p_malignant": None,
                "label": None,
                "decision": None,
                "refer_reason": None,
                "error": None,
                "scored_at": dt.datetime.now(dt.timezone.utc),
                "input_features": None,
                "prediction_set": None,
            }
            data, row["error"] = _read(uri)
            if data is not None:
                row["sha256"] = hashlib.sha256(data).hexdigest()
                if row["sha256"] in known:
                    skipped += 1
                    continue
                known.add(row["sha256"])
                try:
                    pending.append((row, decode_image(data, predictor.image_size), original_size(data)))
                except BadImage as err:
                    row["error"] = str(err)
            if row["error"]:
                failed.append(row)
        return failed, pending, skipped

    chunks = [uris[start : start + batch] for start in range(0, len(uris), batch)]
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-read") as reader,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-decide") as decider,
    ):
        ahead = reader.submit(prepare, chunks[0]) if chunks else None
        deciding = None
        for i in range(len(chunks)):
            failed, pending, skipped = ahead.result()
            ahead = reader.submit(prepare, chunks[i + 1]) if i + 1 < len(chunks) else None
            result.rows += failed
            result.already_scored += skipped
            if pending:
                pixels, probs, features = _forward(predictor, pending)
                if deciding is not None:
                    deciding.result()  # the previous batch's rows are filled (or its error raised)
                deciding = decider.submit(_decide, predictor, pending, pixels, probs, features, inputs)
                result.rows += [row for row, _, _ in pending]
        if deciding is not None:
            deciding.result()
    return result


def _forward(predictor, pending: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both forward passes of a batch: (pixels, p(malignant), ImageNet features)."""
    pixels = np.stack([px for _, px, _ in pending])
    features = predictor.imagenet_features(pixels)
    return pixels, predictor.predict_arrays(pixels), features


def _decide(predictor, pending: list, pixels: np.ndarray, probs: np.ndarray, features: np.ndarray, inputs) -> None:
    """The decision policy and the input-monitoring numbers of a batch whose forward passes ran:
    fills its rows."""
    outputs = predictor.predict_pixels(
        pixels, [size for _, _, size in pending], forward=lambda _: probs, imagenet=features
    )
    vectors = inputs(pixels, features) if inputs is not None else [None] * len(pending)
    for (row, _, _), out, vector in zip(pending, outputs, vectors):
        row.update(
            p_malignant=out["p_malignant"],
            label=out["label"],
            decision=out["decision"],
            refer_reason=out["refer_reason"],
            prediction_set=list(out["prediction_set"]),
            input_features=None if vector is None else [float(v) for v in vector],
        )


def check_bad_fraction(rows: list[dict], max_bad_fraction: float = SCORING_MAX_BAD_FRACTION) -> None:
    bad = [r for r in rows if r["error"]]
    if rows and len(bad) / len(rows) > max_bad_fraction:
        named = "; ".join(f"{r['key']}: {r['error']}" for r in bad[:20])
        more = f" (and {len(bad) - 20} more)" if len(bad) > 20 else ""
        raise TooManyBadFiles(
            f"{len(bad)} of {len(rows)} files could not be scored, over max_bad_fraction "
            f"{max_bad_fraction}: {named}{more}"
        )


def write_rows(rows: list[dict], out_uri: str, name: str) -> str | None:
    """One Parquet file ``<out>/predictions/<name>.parquet`` in a single write; None when no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not rows:
        return None
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema()), buf)
    uri = storage.join(out_uri, PREDICTIONS_DIR, f"{name}.parquet")
    storage.write_bytes(uri, buf.getvalue())
    return uri


def run_name(now: dt.datetime | None = None) -> str:
    """A file name that sorts by time and does not collide between runs."""
    import uuid

    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
