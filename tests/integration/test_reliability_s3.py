"""S3 faults, over real sockets: a fault-injecting proxy on 127.0.0.1 in front of moto.

Transient faults (500, 503, SlowDown, resets, truncated bodies, slow answers) are retried
and the preprocessing output is identical to a clean run's; a fault that persists fails
the run within a bounded time (never a silently skipped image); permanent errors (no
bucket, access denied) fail at once, after exactly one request, naming the URI.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from components.core.data import dataset, storage
from tests.support.faults import FaultProxy, always, every
from tests.support.reliability_support import write_raw
from tests.support.s3 import upload_tree

SPLITS = dataset.OUTPUT_SPLITS


@pytest.fixture
def via(s3_endpoint, monkeypatch):
    """Point the storage layer at a fault proxy in front of moto: ``via(plan, **env)``."""
    proxies = []

    def start(plan, **env) -> FaultProxy:
        proxy = FaultProxy(
            s3_endpoint,
            plan,
            slow_seconds=env.pop("slow_seconds", 3.0),
            trickle_seconds=env.pop("trickle_seconds", 0.2),
        ).start()
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        storage._s3_client.cache_clear()
        return proxy

    yield start
    for p in proxies:
        p.stop()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    storage._s3_client.cache_clear()


def _preprocess(uri, out, **kw):
    return dataset.preprocess(uri, {s: str(out / s) for s in SPLITS}, image_size=16, val_fraction=0.25, workers=4, **kw)


def _outputs(out):
    result = {}
    for s in SPLITS:
        split = dataset.SplitArrays(str(out / s))
        manifest = json.loads((out / s / "manifest.json").read_text())
        result[s] = (split.images(), split.labels.copy(), manifest["sources"], manifest["fingerprint"])
    return result


def test_transient_faults_are_retried_and_outputs_are_identical(tmp_path, s3_bucket, via):
    uri = upload_tree(write_raw(tmp_path / "raw", train=10, test=4), s3_bucket, "raw")
    clean = _preprocess(uri, tmp_path / "clean")

    kinds = ["500", "503", "slowdown", "reset", "truncate", "slow"]
    # Every 3rd request fails, each kind in turn; one attempt is given up after 1 s of silence.
    proxy = via(every(3, kinds), SKIN_CANCER_S3_READ_TIMEOUT=1, SKIN_CANCER_S3_CONNECT_TIMEOUT=2, slow_seconds=2.5)
    started = time.monotonic()
    faulty = _preprocess(uri, tmp_path / "faulty")
    elapsed = time.monotonic() - started

    injected = proxy.faults()
    assert set(kinds) <= set(injected), f"not every fault kind was exercised: {injected}"
    assert any(f == "truncate" and "list-type" not in p for _, _, p, f in proxy.log), "no GET body was truncated"
    assert faulty.skipped == [] and faulty.splits == clean.splits and faulty.fingerprint == clean.fingerprint
    a, b = _outputs(tmp_path / "clean"), _outputs(tmp_path / "faulty")
    for s in SPLITS:
        assert np.array_equal(a[s][0], b[s][0]), s
        assert np.array_equal(a[s][1], b[s][1]), s
        assert a[s][2] == b[s][2] and a[s][3] == b[s][3], s
    assert elapsed < 120, f"retries took {elapsed:.0f} s"


def test_a_fault_that_persists_fails_the_run_instead_of_skipping_the_image(tmp_path, s3_bucket, via):
    uri = upload_tree(write_raw(tmp_path / "raw", train=6, test=3), s3_bucket, "raw")
    victim = "train/malignant/0002.jpg"
    proxy = via(always("503", path_contains=victim, methods=["GET"]), AWS_MAX_ATTEMPTS=3)
    out = tmp_path / "out"
    with pytest.raises(storage.StorageError) as info:
        # A generous bad-file budget: the old behaviour (count it as a bad file) would pass here.
        _preprocess(uri, out, max_bad_fraction=0.5)
    message = str(info.value)
    assert f"{uri}/{victim}" in message
    assert "temporary error (ServiceUnavailable) after 3 attempt(s)" in message
    assert "never skipped" in message
    # Exactly AWS_MAX_ATTEMPTS tries of the failing object, not one and not unbounded.
    assert len(proxy.requests_to(victim)) == 3
    # Nothing that looks like output is left behind.
    assert not out.exists() or not any(out.iterdir())


def test_permanent_errors_fail_at_once_naming_the_uri(tmp_path, s3_bucket, via):
    storage.write_bytes(f"s3://{s3_bucket}/x/a.jpg", b"data")
    proxy = via(None)
    started = time.monotonic()
    with pytest.raises(storage.StorageError, match=r"s3://no-such-bucket-\w+/raw: the bucket does not exist"):
        storage.list_objects("s3://no-such-bucket-zz/raw")
    assert len(proxy.log) == 1, f"NoSuchBucket was retried: {proxy.log}"

    denied = via(always("deny"))
    with pytest.raises(storage.StorageError) as info:
        storage.read_bytes(f"s3://{s3_bucket}/x/a.jpg")
    assert f"s3://{s3_bucket}/x/a.jpg: access denied" in str(info.value)
    assert len(denied.log) == 1, f"AccessDenied was retried: {denied.log}"
    with pytest.raises(storage.StorageError, match="the object does not exist"):
        via(None)
        storage.read_bytes(f"s3://{s3_bucket}/x/missing.jpg")
    assert time.monotonic() - started < 10


def test_an_unresponsive_endpoint_fails_within_the_bounded_time(s3_bucket, via):
    storage.write_bytes(f"s3://{s3_bucket}/k.bin", b"x")
    proxy = via(
        always("hang"),
        AWS_MAX_ATTEMPTS=2,
        SKIN_CANCER_S3_READ_TIMEOUT=1,
        SKIN_CANCER_S3_CONNECT_TIMEOUT=1,
        SKIN_CANCER_S3_BODY_DEADLINE=2,
    )
    bound = storage.worst_case_seconds()
    assert bound == 2 * (1 + 2 * 1 + 2) + 20  # attempts x (connect + 2 reads + body deadline) + backoff
    started = time.monotonic()
    with pytest.raises(storage.StorageError, match=r"network failure talking to S3 after 2 attempts"):
        storage.read_bytes(f"s3://{s3_bucket}/k.bin")
    elapsed = time.monotonic() - started
    assert elapsed < min(bound, 15), f"took {elapsed:.1f} s"
    assert len(proxy.log) == 2


def test_a_body_that_trickles_is_cut_off_at_the_deadline(s3_bucket, via):
    """Each byte arrives within the read timeout, so only the whole-body deadline can end it."""
    storage.write_bytes(f"s3://{s3_bucket}/big.bin", bytes(range(200)))
    proxy = via(
        always("trickle", methods=["GET"]),
        AWS_MAX_ATTEMPTS=2,
        SKIN_CANCER_S3_READ_TIMEOUT=1,
        SKIN_CANCER_S3_CONNECT_TIMEOUT=1,
        SKIN_CANCER_S3_BODY_DEADLINE=1.5,
        trickle_seconds=0.1,
    )
    bound = storage.worst_case_seconds()
    started = time.monotonic()
    with pytest.raises(
        storage.StorageError,
        match=r"big.bin: network failure talking to S3 after 2 attempts "
        r"\(BodyDeadlineExceeded; at most 29 s per object\)",
    ):
        storage.read_bytes(f"s3://{s3_bucket}/big.bin")
    elapsed = time.monotonic() - started
    # 200 bytes at 0.1 s would take 20 s an attempt; the deadline ends each after ~1.5 s.
    assert elapsed < 2 * (1.5 + 1) + 1, f"took {elapsed:.1f} s (bound {bound:.0f} s)"
    assert len(proxy.requests_to("big.bin")) == 2


def test_one_retry_layer_an_object_never_costs_more_than_max_attempts_requests(s3_bucket, via):
    """Resets (a request error) and truncated bodies (a body error) in turn: each is one attempt of
    the one retry loop, never a retry inside a retry (which once cost up to attempts squared)."""
    storage.write_bytes(f"s3://{s3_bucket}/v.bin", bytes(range(100)))
    proxy = via(every(1, ["reset", "truncate"], methods=["GET"]), AWS_MAX_ATTEMPTS=4)
    with pytest.raises(storage.StorageError, match=r"network failure talking to S3 after 4 attempts"):
        storage.read_bytes(f"s3://{s3_bucket}/v.bin")
    assert [f for _, _, _, f in proxy.requests_to("v.bin")] == ["reset", "truncate", "reset", "truncate"]
    # ... and a fault that clears is ridden out within the budget.
    proxy = via(every(2, ["503"], methods=["GET"]), AWS_MAX_ATTEMPTS=2)
    assert storage.read_bytes(f"s3://{s3_bucket}/v.bin") == bytes(range(100))
    assert len(proxy.requests_to("v.bin")) == 2
