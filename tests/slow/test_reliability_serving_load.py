"""Serving under load: a bounded load test against `skin-cancer serve` on 127.0.0.1.

1,000 good requests from 16 client threads (one keep-alive connection each), mixing ``POST
/predict`` multipart uploads and V2 ``/v2/models/{name}/infer`` JSON over a few real JPEGs and
PNGs. Every answer must be well-formed and equal to the answer the same server gave for that
image beforehand, with zero errors. At the same time other threads send bad uploads (non-image,
truncated JPEG, oversized body, decompression bombs, wrong content types, malformed V2 JSON,
clients that hang up half way) and each must get its 4xx; and clients that send half a request
and then stall hold their connections open for the whole run, so every good answer is given
while they stall. Afterwards the server is ready, answers identically, logged no internal error
and holds no more file descriptors than before.

Latency is reported, never asserted (timings on a shared machine are not a correctness
property): p50/p99/max and throughput are printed and written to ``serving_load.json`` in the
test's tmp dir. The whole run is bounded by a deadline and per-request socket timeouts, so a
stall fails the test with a message instead of hanging it.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from components.core.data.dataset import CLASSES
from tests.support.serving_helpers import (  # the load test; its fixtures: tests/support/serving_fixtures.py
    INFER,
    MAX_PIXELS,
    MODEL_NAME,
    MODEL_VERSION,
    bomb_png,
    kserve_v2_datamodels,
    multipart,
    sample_images,
    shared_bad_uploads,
)

# The shared model and server fixtures (one trained model, one server, for every serving module).
pytest_plugins = ["tests.support.serving_fixtures"]

TOTAL = 1000  # good requests
CONCURRENCY = 16  # good client threads
BAD_THREADS = 3  # threads sending bad uploads while the load runs
BAD_ROUNDS = 2  # each sends every bad case this many times
HANG_UPS = 20  # clients that send half an upload and disconnect
DEADLINE_S = 120.0  # the whole run, good and bad requests together
REQUEST_TIMEOUT_S = 30.0  # any one socket operation
KEEP_ALIVE_REUSE_S = 3.0  # reuse a connection idle for less than this (the server's keep-alive is 5 s)


# --- request bodies ---------------------------------------------------------------------------


def v2_json(data: bytes, request_id: str) -> bytes:
    return json.dumps(
        {
            "id": request_id,
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(data).decode()]}],
        }
    ).encode()


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def good_images(demo_raw) -> dict[str, tuple[bytes, str, str]]:
    """name -> (file bytes, filename, content type): held-out JPEGs as written, PNG copies, and
    one larger JPEG (an upload the size of a phone crop), benign and malignant."""
    files = sample_images(demo_raw)
    out: dict[str, tuple[bytes, str, str]] = {}
    for cls in CLASSES:
        for path in files[cls][:2]:
            out[f"{cls}-{path.stem}.jpg"] = (path.read_bytes(), path.name, "image/jpeg")
        pixels = np.asarray(Image.open(files[cls][2]).convert("RGB"))
        out[f"{cls}-{files[cls][2].stem}.png"] = (encode(pixels, "PNG"), f"{files[cls][2].stem}.PNG", "image/png")
    big = np.asarray(Image.open(files["malignant"][3]).convert("RGB").resize((640, 480), Image.Resampling.BICUBIC))
    out["malignant-large.jpg"] = (encode(big, "JPEG"), "large.jpg", "image/jpeg")
    return out


# --- checking answers ---------------------------------------------------------------------------


def check_predict(body, threshold: float) -> tuple[str, float]:
    """(label, p) of a well-formed /predict answer; AssertionError otherwise."""
    assert isinstance(body, dict) and set(body) == {
        "label",
        "p_malignant",
        "decision",
        "refer_reason",
        "prediction_set",
        "ood_score",
        "refer_text",
        "threshold",
        "model_name",
        "model_version",
    }, body
    assert body["decision"] in (*CLASSES, "refer"), body
    assert (body["model_name"], body["model_version"]) == (MODEL_NAME, MODEL_VERSION), body
    assert body["threshold"] == threshold, body
    return check_pair(body["label"], body["p_malignant"], threshold)


def check_v2(body, threshold: float, request_id: str) -> tuple[str, float]:
    """(label, p) of a well-formed V2 infer answer for one image; AssertionError otherwise."""
    assert isinstance(body, dict), body
    kserve_v2_datamodels().InferenceResponse.model_validate(body)
    assert (body.get("model_name"), body.get("model_version"), body.get("id")) == (
        MODEL_NAME,
        MODEL_VERSION,
        request_id,
    ), body
    assert body.get("parameters") == {"threshold": threshold}, body
    outs = {o["name"]: o for o in body["outputs"]}
    assert set(outs) == {"p_malignant", "label", "decision", "refer_reason"} and len(body["outputs"]) == 4, body
    assert outs["decision"]["data"][0] in (*CLASSES, "refer"), body
    p, label = outs["p_malignant"], outs["label"]
    assert (p["datatype"], p["shape"], label["datatype"], label["shape"]) == ("FP32", [1], "BYTES", [1]), body
    assert len(p["data"]) == 1 and len(label["data"]) == 1, body
    return check_pair(label["data"][0], p["data"][0], threshold)


def check_pair(label, p, threshold: float) -> tuple[str, float]:
    assert isinstance(p, float) and 0.0 <= p <= 1.0, p
    assert label in CLASSES and label == CLASSES[int(p >= threshold)], (label, p, threshold)
    return label, p


def same_answer(got: tuple[str, float], expected: tuple[str, float]) -> bool:
    return got[0] == expected[0] and abs(got[1] - expected[1]) <= 1e-6


# --- clients ------------------------------------------------------------------------------------


class GoodClient(threading.Thread):
    """One keep-alive connection; takes request numbers from ``work`` until it is empty."""

    def __init__(self, port: int, work, images, expected, threshold, deadline, results, errors, lock):
        super().__init__(daemon=True)
        self.port, self.work, self.images, self.expected = port, work, images, expected
        self.threshold, self.deadline, self.results, self.errors, self.lock = threshold, deadline, results, errors, lock
        self.names = sorted(images)
        self.conn, self.last_used = None, 0.0

    def request(self, method: str, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        # uvicorn closes a keep-alive connection after 5 s idle: like urllib3, do not reuse one
        # that may be closing (never the case at this rate). No retries: any failure is an error.
        if self.conn is not None and time.monotonic() - self.last_used > KEEP_ALIVE_REUSE_S:
            self.conn.close()
            self.conn = None
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        self.conn.request(method, path, body=body, headers={"Content-Type": content_type})
        r = self.conn.getresponse()
        data = r.read()
        self.last_used = time.monotonic()
        return r.status, data

    def run(self):
        while time.monotonic() < self.deadline:
            try:
                i = self.work.pop()
            except IndexError:
                break
            name = self.names[i % len(self.names)]
            data, filename, media = self.images[name]
            kind = "predict" if i % 2 == 0 else "v2"
            started = time.perf_counter()
            try:
                if kind == "predict":
                    body, ctype = multipart(data, filename, media, boundary=f"b{i}")
                    status, raw = self.request("POST", "/predict", body, ctype)
                else:
                    status, raw = self.request("POST", INFER, v2_json(data, f"load-{i}"), "application/json")
                elapsed = time.perf_counter() - started
                assert status == 200, f"HTTP {status}: {raw[:300]!r}"
                answer = json.loads(raw)
                got = (
                    check_predict(answer, self.threshold)
                    if kind == "predict"
                    else check_v2(answer, self.threshold, f"load-{i}")
                )
                assert same_answer(got, self.expected[name]), f"answered {got}, expected {self.expected[name]}"
                with self.lock:
                    self.results.append((i, kind, name, elapsed, time.monotonic(), got == self.expected[name]))
            except Exception as err:  # noqa: BLE001 - every failure is collected and reported, none ends the run
                with self.lock:
                    self.errors.append(f"request {i} ({kind}, {name}): {type(err).__name__}: {err}")
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
        if self.conn is not None:
            self.conn.close()


def bad_cases(images) -> list[tuple[str, str, dict, int, str]]:
    """(id, path, requests kwargs, expected status, fragment of the error message)."""
    good = images["malignant-large.jpg"][0]
    side = int(MAX_PIXELS**0.5) + 100
    return shared_bad_uploads(good) + [
        (
            "bomb-v2",
            INFER,
            dict(
                json={
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "BYTES",
                            "shape": [1],
                            "data": [base64.b64encode(bomb_png(side)).decode()],
                        }
                    ]
                }
            ),
            400,
            "decompression bomb",
        ),
        (
            "txt-extension",
            "/predict",
            dict(files={"file": ("notes.txt", good, "image/jpeg")}),
            415,
            "unsupported file type",
        ),
        (
            "v2-not-json",
            INFER,
            dict(data=b'{"inputs": [{"name": "image", "data', headers={"Content-Type": "application/json"}),
            400,
            "not valid JSON",
        ),
        (
            "v2-truncated-image",
            INFER,
            dict(
                json={
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "BYTES",
                            "shape": [1],
                            "data": [base64.b64encode(good[:200]).decode()],
                        }
                    ]
                }
            ),
            400,
            "truncated",
        ),
    ]


class Pacer:
    """Spreads the ``n`` bad requests of one thread over the good load: the k-th waits until the
    good clients have finished (k + 1) / (n + 1) of their requests, so bad and good requests
    interleave (and a flood of cheap 4xx cannot starve the good clients)."""

    def __init__(self, progress, load_done: threading.Event, deadline: float):
        self.progress, self.load_done, self.deadline = progress, load_done, deadline

    def wait(self, k: int, n: int) -> None:
        target = (k + 1) * TOTAL // (n + 1)
        while self.progress() < target and not self.load_done.is_set() and time.monotonic() < self.deadline:
            time.sleep(0.005)


class BadClient(threading.Thread):
    """Sends every bad case ``rounds`` times, paced over the good load; checks each answer."""

    def __init__(self, url: str, cases, offset: int, rounds: int, pacer: Pacer, results, errors, lock):
        super().__init__(daemon=True)
        self.url, self.cases, self.offset, self.rounds, self.pacer = url, cases, offset, rounds, pacer
        self.results, self.errors, self.lock = results, errors, lock

    def run(self):
        n = self.rounds * len(self.cases)
        with requests.Session() as session:
            for k in range(n):
                self.pacer.wait(k, n)
                case_id, path, kwargs, status, fragment = self.cases[(k + self.offset) % len(self.cases)]
                try:
                    r = session.post(self.url + path, timeout=REQUEST_TIMEOUT_S, **kwargs)
                    ctype = r.headers.get("content-type", "")
                    message = r.json().get("error", "") if ctype.startswith("application/json") else ""
                    ok = r.status_code == status and fragment.lower() in message.lower()
                    with self.lock:
                        if ok:
                            self.results.append((case_id, time.monotonic()))
                        else:
                            self.errors.append(
                                f"bad upload {case_id}: HTTP {r.status_code} {r.text[:200]!r}, "
                                f"expected {status} with {fragment!r}"
                            )
                except Exception as err:  # noqa: BLE001 - collected and reported
                    with self.lock:
                        self.errors.append(f"bad upload {case_id}: {type(err).__name__}: {err}")


def raw_request(port: int, head: bytes, body_part: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT_S)
    s.sendall(head + body_part)
    return s


def stalled_requests(port: int, images) -> dict[str, socket.socket]:
    """Connections that send part of a request and then nothing: half a multipart upload, half a
    V2 JSON body, half a chunked upload, and half the request headers."""
    data = images[min(n for n in images if n.startswith("benign-") and n.endswith(".jpg"))][0]
    form, ctype = multipart(data, "a.jpg", "image/jpeg")
    v2 = v2_json(data, "stalled")
    return {
        "half-multipart": raw_request(
            port,
            (
                f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(form)}\r\n\r\n"
            ).encode(),
            form[: len(form) // 2],
        ),
        "half-v2-json": raw_request(
            port,
            (
                f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(v2)}\r\n\r\n"
            ).encode(),
            v2[: len(v2) // 2],
        ),
        "half-chunked": raw_request(
            port,
            (
                f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode(),
            f"{len(form) // 2:x}\r\n".encode() + form[: len(form) // 2] + b"\r\n",
        ),
        "half-headers": raw_request(port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form", b""),
    }


def hang_ups(port: int, images, count: int, pacer: Pacer, results, errors, lock) -> None:
    """Clients that send half an upload and disconnect at once (FIN, or RST every other time)."""
    data = images["malignant-large.jpg"][0]
    form, ctype = multipart(data, "a.jpg", "image/jpeg")
    for k in range(count):
        pacer.wait(k, count)
        try:
            s = raw_request(
                port,
                (
                    f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(form)}\r\n\r\n"
                ).encode(),
                form[: len(form) // 2],
            )
            if k % 2:  # abortive close: RST instead of FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            with lock:
                results.append(("hang-up", time.monotonic()))
        except OSError as err:
            with lock:
                errors.append(f"hang-up client {k}: could not even connect/send: {err}")


def still_connected_or_clean(s: socket.socket) -> str:
    """'open' if the server still waits for the rest, 'closed' after a clean close (with or
    without an HTTP error answer first); raises on anything else."""
    s.setblocking(False)
    try:
        data = s.recv(65536)
    except BlockingIOError:
        return "open"
    finally:
        s.setblocking(True)
    if data == b"":
        return "closed"
    assert data.startswith(b"HTTP/1.1 4"), data[:200]
    return "answered " + data.split(b"\r\n", 1)[0].decode()


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, int(np.ceil(q / 100 * len(sorted_values))) - 1))
    return sorted_values[k]


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.timeout(300)
# Minutes of load on a shared machine: the slow tier (bash scripts/test.sh -m slow). The stalled and
# vanishing uploads below take a second each, in process: they run in the default tier.
@pytest.mark.slow
def test_load_with_bad_uploads_interleaved(server, good_images, tmp_path, record_property):
    url, port, pid = server.url, server.port, server.proc.pid
    log_start = Path(server.log).stat().st_size

    # The expected answer for every image, once, from this server; /predict and V2 must agree.
    threshold = requests.get(f"{url}/v2/models/{MODEL_NAME}", timeout=30).json()["parameters"]["threshold"]
    expected: dict[str, tuple[str, float]] = {}
    for name, (data, filename, media) in sorted(good_images.items()):
        r = requests.post(url + "/predict", files={"file": (filename, data, media)}, timeout=30)
        assert r.status_code == 200, r.text
        expected[name] = check_predict(r.json(), threshold)
        r = requests.post(
            url + INFER, data=v2_json(data, "warm-up"), timeout=30, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 200, r.text
        assert check_v2(r.json(), threshold, "warm-up") == expected[name], name
    assert {label for label, _ in expected.values()} <= set(CLASSES)
    fds_before = open_fds(pid)

    lock = threading.Lock()
    good_results: list = []
    good_errors: list[str] = []
    bad_results: list = []
    bad_errors: list[str] = []
    hang_results: list = []
    load_done = threading.Event()
    work = list(range(TOTAL))[::-1]  # list.pop() is atomic under the GIL: a shared work queue
    cases = bad_cases(good_images)

    # Clients that stall half way through a request, for the whole run.
    stalled = stalled_requests(port, good_images)
    try:
        stalled_since = time.monotonic()
        started = time.monotonic()
        deadline = started + DEADLINE_S

        def progress():
            return len(good_results) + len(good_errors)

        pacer = Pacer(progress, load_done, deadline)
        good = [
            GoodClient(port, work, good_images, expected, threshold, deadline, good_results, good_errors, lock)
            for _ in range(CONCURRENCY)
        ]
        bad = [
            BadClient(url, cases, 5 * k, BAD_ROUNDS, pacer, bad_results, bad_errors, lock) for k in range(BAD_THREADS)
        ]
        hang = threading.Thread(
            target=hang_ups, args=(port, good_images, HANG_UPS, pacer, hang_results, bad_errors, lock), daemon=True
        )
        for t in good + bad + [hang]:
            t.start()
        for t in good:
            t.join(max(0.0, deadline - time.monotonic()))
        load_end = time.monotonic()
        load_done.set()
        for t in bad + [hang]:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t for t in good + bad + [hang] if t.is_alive()]
        assert not stuck, (
            f"{len(stuck)} client thread(s) still running after the {DEADLINE_S:.0f} s deadline: "
            f"{len(good_results)}/{TOTAL} good requests answered, {len(work)} never sent; "
            f"the server stalled (log: {server.log})"
        )
        # The stalled clients: the server still waits for them, or closed them cleanly.
        stalled_state = {name: still_connected_or_clean(s) for name, s in stalled.items()}
        stalled_until = time.monotonic()
    finally:
        for s in stalled.values():
            s.close()

    # Report (never asserted: timings on a shared machine are not a correctness property).
    latencies = sorted(r[3] for r in good_results)
    elapsed = load_end - started
    report = {
        "requests": TOTAL,
        "concurrency": CONCURRENCY,
        "answered": len(good_results),
        "errors": len(good_errors) + len(bad_errors),
        "by_kind": {k: sum(1 for r in good_results if r[1] == k) for k in ("predict", "v2")},
        "bit_identical": sum(1 for r in good_results if r[5]),
        "bad_requests_answered_4xx": len(bad_results),
        "bad_requests_during_load": sum(1 for _, t in bad_results if t <= load_end),
        "hang_up_clients": len(hang_results),
        "stalled_clients": stalled_state,
        "elapsed_s": round(elapsed, 3),
        "throughput_rps": round(len(good_results) / elapsed, 1),
        "latency_ms": {
            "p50": round(1000 * percentile(latencies, 50), 2) if latencies else None,
            "p99": round(1000 * percentile(latencies, 99), 2) if latencies else None,
            "max": round(1000 * latencies[-1], 2) if latencies else None,
        },
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
    }
    (tmp_path / "serving_load.json").write_text(json.dumps(report, indent=2))
    record_property("serving_load", json.dumps(report))
    print(
        f"\nserving load: {report['answered']}/{TOTAL} answered by {CONCURRENCY} clients in {elapsed:.1f} s "
        f"({report['throughput_rps']} req/s); latency p50 {report['latency_ms']['p50']} ms, "
        f"p99 {report['latency_ms']['p99']} ms, max {report['latency_ms']['max']} ms; "
        f"{len(bad_results)} bad uploads answered 4xx ({report['bad_requests_during_load']} during the load); "
        f"report: {tmp_path / 'serving_load.json'}"
    )

    # Correctness: zero errors, every good request answered, each equal to its image's answer.
    assert not good_errors, f"{len(good_errors)} good request(s) failed:\n" + "\n".join(good_errors[:20])
    assert not bad_errors, f"{len(bad_errors)} bad upload(s) not answered as expected:\n" + "\n".join(bad_errors[:20])
    assert len(good_results) == TOTAL and sorted(r[0] for r in good_results) == list(range(TOTAL))
    assert {r[2] for r in good_results} == set(good_images)
    assert len(bad_results) == BAD_THREADS * BAD_ROUNDS * len(cases) and len(hang_results) == HANG_UPS
    # Every good answer was given while the stalled clients held their half requests open.
    assert all(stalled_since < r[4] < stalled_until for r in good_results)

    # Afterwards: ready, the same answer as before, no internal error logged, no leaked sockets.
    assert server.proc.poll() is None, "the server exited"
    assert requests.get(url + "/v2/health/ready", timeout=30).status_code == 200
    for name, (data, filename, media) in sorted(good_images.items()):
        r = requests.post(url + "/predict", files={"file": (filename, data, media)}, timeout=30)
        assert r.status_code == 200 and check_predict(r.json(), threshold) == expected[name], r.text
    if fds_before is not None:
        until = time.monotonic() + 20
        while open_fds(pid) > fds_before and time.monotonic() < until:
            time.sleep(0.2)
        assert open_fds(pid) <= fds_before, (
            f"the server holds {open_fds(pid)} file descriptors after the run, "
            f"{fds_before} before: connections were not released"
        )
    log = Path(server.log).read_bytes()[log_start:].decode(errors="replace")
    for marker in ("Traceback", "internal error", "Exception in ASGI application"):
        assert marker not in log, f"the server logged {marker!r} during the load:\n{log[-3000:]}"
