"""One storage layer for ``s3://bucket/prefix`` URIs and local paths.

S3 settings come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``...), so MinIO and other
S3-compatible stores work without code changes.

Faults: transient S3 errors (HTTP 500/502/503/504, ``SlowDown`` and other throttling,
connection resets, timeouts) are retried with exponential backoff and jitter up to
``AWS_MAX_ATTEMPTS`` attempts (default 8), by ONE retry layer per call: for a GET it is
:func:`_get_s3`'s loop, which covers the request and the whole body (botocore does not retry
there, so an object never costs more than ``AWS_MAX_ATTEMPTS`` requests); for listing and
writing it is botocore's "standard" mode. Each attempt is bounded by
``SKIN_CANCER_S3_CONNECT_TIMEOUT`` and ``SKIN_CANCER_S3_READ_TIMEOUT`` (between bytes), and a
GET's whole body by ``SKIN_CANCER_S3_BODY_DEADLINE``, so a body that trickles is cut off too:
:func:`worst_case_seconds` is the bound per object. Permanent errors (no bucket, no key, access denied, bad
credentials) are not retried and surface at once as :class:`StorageError` naming
the URI. Messages never contain credential values.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from components.core import settings

DEFAULT_WORKERS = 32

log = logging.getLogger(__name__)

# Error codes S3 (and botocore's "standard" retry mode) treat as temporary.
TRANSIENT_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "BadGateway",
        "GatewayTimeout",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)


class StorageError(RuntimeError):
    """A read, list or write failed for a reason a person must fix."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its full URI, its key relative to the listed prefix, size and ETag."""

    uri: str
    relpath: str
    size: int
    etag: str


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} is not a valid S3 URI: expected s3://BUCKET/PREFIX")
    return bucket, key


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


def max_attempts() -> int:
    """Attempts per S3 request (first try included): ``AWS_MAX_ATTEMPTS``, default 8."""
    return _setting("AWS_MAX_ATTEMPTS", int)


def timeouts() -> tuple[float, float]:
    """(connect, read) timeout of one S3 attempt, in seconds."""
    return (
        _setting("SKIN_CANCER_S3_CONNECT_TIMEOUT", float),
        _setting("SKIN_CANCER_S3_READ_TIMEOUT", float),
    )


def _setting(name: str, kind):
    try:
        return settings.env_number(name, kind)
    except settings.SettingError as err:
        raise StorageError(str(err)) from None


def body_deadline() -> float:
    return _setting("SKIN_CANCER_S3_BODY_DEADLINE", float)


MAX_BACKOFF_S = 20.0


def backoff_seconds(attempt: int) -> float:
    """Full jitter, doubling from 0.1 s, capped at MAX_BACKOFF_S (like botocore's standard mode)."""
    return random.random() * min(0.05 * 2**attempt, MAX_BACKOFF_S)


def worst_case_seconds() -> float:
    """Upper bound on the time one GET can take before it fails: every attempt using its
    connect timeout, its read timeout before the first byte and its whole-body deadline (plus
    one read timeout for the chunk in flight), and the capped backoff between attempts."""
    connect, read = timeouts()
    attempts = max_attempts()
    return attempts * (connect + 2 * read + body_deadline()) + (attempts - 1) * MAX_BACKOFF_S


@lru_cache(maxsize=8)
def _s3_client(max_pool: int = DEFAULT_WORKERS, retried: bool = True):
    """The S3 client. ``retried=False`` for GETs: their retry layer is :func:`_get_s3`."""
    import boto3
    from botocore.config import Config

    connect, read = timeouts()
    config = Config(
        # Transient errors (5xx, throttling, resets, timeouts) retry with exponential backoff
        # and jitter; permanent ones (4xx but throttling) are not retried.
        retries={"total_max_attempts": max_attempts() if retried else 1, "mode": "standard"},
        connect_timeout=connect,
        read_timeout=read,
        max_pool_connections=max_pool,
    )
    # boto3 reads AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 itself; region defaults so MinIO works.
    return boto3.session.Session().client("s3", region_name=settings.s3_region(), config=config)


def _explain(uri: str, err: Exception, attempts: int | None = None) -> StorageError:
    """The error a person reads. ``attempts``: how many the caller's own retry loop made
    (otherwise botocore's count of its retries is used)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        EndpointConnectionError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
    )
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        tries = attempts or err.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
        if code in TRANSIENT_CODES:
            return StorageError(
                f"{uri}: S3 kept failing with a temporary error ({code}) after {tries} attempt(s); "
                "the store is overloaded or down: rerun later, or raise AWS_MAX_ATTEMPTS"
            )
        hints = {
            "NoSuchBucket": "the bucket does not exist; check the URI",
            "NoSuchKey": "the object does not exist; check the URI",
            "404": "the object does not exist; check the URI",
            "AccessDenied": "access denied; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket policy",
            "403": "access denied; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket policy",
            "InvalidAccessKeyId": "unknown access key; check AWS_ACCESS_KEY_ID",
            "SignatureDoesNotMatch": "wrong secret key; check AWS_SECRET_ACCESS_KEY",
        }
        return StorageError(f"{uri}: {hints.get(code, code or 'S3 error')} ({code})")
    if isinstance(err, EndpointConnectionError):
        return StorageError(f"{uri}: cannot reach the S3 endpoint; check AWS_ENDPOINT_URL and the network")
    if isinstance(err, (ConnectionError, HTTPClientError, IncompleteReadError, Urllib3Error, BodyDeadlineExceeded)):
        # Timeouts, resets, truncated or trickling bodies (urllib3's errors: a body read below
        # botocore), still failing once every attempt was used.
        return StorageError(
            f"{uri}: network failure talking to S3 after {attempts or max_attempts()} attempts "
            f"({type(err).__name__}; at most {worst_case_seconds():.0f} s per object); check the endpoint "
            "and the network, or raise AWS_MAX_ATTEMPTS"
        )
    if isinstance(err, NoCredentialsError):
        return StorageError(f"{uri}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(err, FileNotFoundError):
        return StorageError(f"{uri}: no such file or directory")
    return StorageError(f"{uri}: {type(err).__name__}: {err}")


def list_objects(prefix: str) -> list[ObjectInfo]:
    """List every object under ``prefix`` (recursively), sorted by relative path."""
    try:
        if is_s3(prefix):
            return _list_s3(prefix)
        return _list_local(prefix)
    except StorageError:
        raise
    except Exception as err:  # botocore and OS errors become one clear message
        raise _explain(prefix, err) from err


def _list_s3(prefix: str) -> list[ObjectInfo]:
    bucket, key = split_s3(prefix.rstrip("/") + "/")
    client = _s3_client()
    # Each top-level "directory" is listed in its own thread: a data set's splits and
    # classes are listed concurrently instead of one paginated scan.
    top = client.list_objects_v2(Bucket=bucket, Prefix=key, Delimiter="/")
    sub_prefixes = [p["Prefix"] for p in top.get("CommonPrefixes", [])]
    objects = list(top.get("Contents", []))

    def scan(sub: str) -> list[dict]:
        out: list[dict] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sub):
            out.extend(page.get("Contents", []))
        return out

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(sub_prefixes)))) as pool:
        for chunk in pool.map(scan, sub_prefixes):
            objects.extend(chunk)
    infos = [
        ObjectInfo(
            uri=f"s3://{bucket}/{o['Key']}",
            relpath=o["Key"][len(key) :],
            size=int(o["Size"]),
            etag=str(o.get("ETag", "")).strip('"'),
        )
        for o in objects
        if not o["Key"].endswith("/")
    ]
    return sorted(infos, key=lambda i: i.relpath)


def _list_local(prefix: str) -> list[ObjectInfo]:
    root = Path(prefix)
    if not root.is_dir():
        raise StorageError(f"{prefix}: no such directory")
    infos = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            # Local "ETag": size and mtime stand in for a content hash so listing stays cheap.
            infos.append(
                ObjectInfo(
                    uri=str(path),
                    relpath=path.relative_to(root).as_posix(),
                    size=st.st_size,
                    etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
                )
            )
    return infos


def read_bytes(uri: str) -> bytes:
    """Read one object whole. Raises :class:`StorageError` once retries are used up."""
    try:
        if is_s3(uri):
            return _get_s3(uri)
        return Path(uri).read_bytes()
    except StorageError:
        raise
    except Exception as err:
        raise _explain(uri, err) from err


class BodyDeadlineExceeded(IOError):
    """A GET's body did not arrive within SKIN_CANCER_S3_BODY_DEADLINE (it trickled)."""


def _get_s3(uri: str) -> bytes:
    """One retry layer for a GET: the request and the whole body are one attempt, retried here
    on a transient error (botocore's client for GETs does not retry), so an object costs at most
    AWS_MAX_ATTEMPTS requests and at most :func:`worst_case_seconds`."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, IncompleteReadError
    from urllib3.exceptions import HTTPError as Urllib3Error

    bucket, key = split_s3(uri)
    attempts, deadline_s = max_attempts(), body_deadline()
    for attempt in range(1, attempts + 1):
        try:
            response = _s3_client(retried=False).get_object(Bucket=bucket, Key=key)
            return _read_body(response["Body"], int(response["ContentLength"]), deadline_s)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code not in TRANSIENT_CODES:
                raise  # permanent: no bucket, no key, access denied
            if attempt == attempts:
                raise _explain(uri, err, attempts) from None
            why = code
        except (ConnectionError, HTTPClientError, IncompleteReadError, Urllib3Error, BodyDeadlineExceeded) as err:
            if attempt == attempts:
                raise _explain(uri, err, attempts) from err
            why = type(err).__name__
        log.warning("%s: %s, attempt %d of %d; retrying", uri, why, attempt, attempts)
        time.sleep(backoff_seconds(attempt))
    raise AssertionError("unreachable")


def _read_body(body, length: int, deadline_s: float, chunk: int = 1 << 16) -> bytes:
    """The whole body (``length`` bytes), or BodyDeadlineExceeded once ``deadline_s`` seconds
    have passed. Reads take what one socket read brings (urllib3's ``read1``: botocore's
    ``read(n)`` would wait for all n bytes of a trickle), each bounded by the read timeout, so
    the deadline is overshot by at most one read timeout."""
    from botocore.exceptions import IncompleteReadError

    deadline = time.monotonic() + deadline_s
    raw = getattr(body, "_raw_stream", None)  # botocore keeps no public handle on it
    read = raw.read1 if hasattr(raw, "read1") else body.read
    parts, got = [], 0
    while got < length:
        data = read(min(chunk, length - got))
        if not data:
            raise IncompleteReadError(actual_bytes=got, expected_bytes=length)
        parts.append(data)
        got += len(data)
        if got < length and time.monotonic() > deadline:
            body.close()
            raise BodyDeadlineExceeded(f"body not complete within {deadline_s:.0f} s")
    return b"".join(parts)


def write_bytes(uri: str, data: bytes) -> None:
    """Write one object. Local writes go through a temporary file and a rename so
    readers never see a half-written file; S3 PUTs are atomic by nature."""
    try:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            _s3_client().put_object(Bucket=bucket, Key=key, Body=data)
            return
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except StorageError:
        raise
    except Exception as err:
        raise _explain(uri, err) from err


def fingerprint(objects: Iterable[ObjectInfo]) -> str:
    """A stable hash over relative keys, sizes and ETags: changes when any image changes."""
    h = hashlib.sha256()
    for info in sorted(objects, key=lambda i: i.relpath):
        h.update(f"{info.relpath}\t{info.size}\t{info.etag}\n".encode())
    return h.hexdigest()[:16]
