"""The inference server's throughput and latency against the same model's raw batched forward
pass (issue 25).

    .venv/bin/python -m benchmarks.serving --model-uri DIR_OR_MODELS_URI [--data ../shared/data/skin-cancer]
        [--requests 192] [--clients 1,4,16] [--protocols http,grpc] [--batch 16] [--out runs/bench-serving]
        [--url http://HOST:PORT [--grpc-url HOST:PORT]] [--baseline-tree OLD_CHECKOUT]

Side by side, on one machine, in one run, one after the other:

* ``raw`` (before the servers and again after them; the row is both runs together): in a fresh
  process, decode each JPEG with the project's decoder, then
  ``Predictor.predict_pixels`` on batches of ``--batch`` with the traced forward pass (the
  classifier, the ImageNet feature pass and the decision policy: everything the server runs per
  image, without HTTP or a queue): what the model can do on this machine;
* ``baseline`` (with ``--baseline-tree DIR``): the same over HTTP against ``skin-cancer serve`` of
  another checkout (the server before issue 25: its single-client p50 is the latency to keep);
* ``server``: ``skin-cancer serve`` on free ports in a subprocess (or the server at ``--url``),
  then for each protocol and client count ``c``: ``c`` threads, each with its own Triton V2
  client (``tritonclient.http`` / ``tritonclient.grpc``), each sending one JPEG per request
  (a BYTES input of shape [1]) until ``--requests`` requests have been answered. Images/s is
  requests answered over wall time; p50 and p99 are per-request latencies. Every answer is
  checked (a ``decision`` per image), so an error cannot pass as speed.

Every server is started first and all stay up; each row is measured in ``ROUNDS`` blocks of
``--requests`` requests, the servers taking turns, so that a slow minute of a shared machine falls on all of them alike (run
back to back, one server after the other, single-client p50s of the same server differed by up to
15 % here). Each block starts with one uncounted warm-up request per client. The JPEGs are the
real images (cycled). After the rows, the server this run started gets one request of the
most images one request may hold (the server's ``--max-batch``, default 32), and its peak resident memory
(VmHWM) is reported against the InferenceService's memory limit (issue 32). Writes
``serving.json`` and ``serving.md`` to ``--out``; prints the markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.processes import free_port, start, stop

TARGET_RATIO = 0.85  # server images/s with 16 clients over the raw batched pass's (issue 25)
TARGET_P50 = 1.10  # a single client's p50 over the server's before issue 25 (--baseline-tree)
TARGET_MEMORY = 0.8  # the server's peak resident memory over the InferenceService's limit (issue 32)
WARM_UP = 1  # requests per client before each block's clock starts
ROUNDS = 2  # blocks of --requests per row, the servers taking turns (a shared machine drifts by 10-20 %)


def load_images(data: Path, count: int) -> list[bytes]:
    sources = sorted(data.glob("*/*/*.jpg"))
    if not sources:
        raise FileNotFoundError(f"{data}: no {{train,test}}/{{benign,malignant}}/*.jpg images")
    return [sources[i % len(sources)].read_bytes() for i in range(count)]


def _raw_child(model_uri: str, data: str, count: int, batch: int) -> dict:
    """The raw batched pass, in this process (started fresh by :func:`measure_raw`)."""
    from components.core.inference.runtime import SERVING_INTER_OP_THREADS, bound_model_memory

    bound_model_memory(SERVING_INTER_OP_THREADS)  # as `skin-cancer serve` does, first thing

    import numpy as np

    from components.core.data.images import decode_image, original_size
    from components.core.inference.predictor import Predictor

    predictor = Predictor.load(model_uri)
    blobs = load_images(Path(data), count)
    warm = np.stack([decode_image(b, predictor.image_size) for b in blobs[:batch]])
    predictor.predict_pixels(warm)  # the traced graph the server runs, and kernels set up before the clock starts
    started = time.perf_counter()
    for i in range(0, count, batch):
        chunk = blobs[i : i + batch]
        pixels = np.stack([decode_image(b, predictor.image_size) for b in chunk])
        predictor.predict_pixels(pixels, [original_size(b) for b in chunk])
    seconds = time.perf_counter() - started
    return {
        "mode": f"raw batch {batch}",
        "images": count,
        "seconds": round(seconds, 2),
        "images_per_s": round(count / seconds, 2),
    }


def measure_raw(model_uri: str, data: Path, count: int, batch: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.serving",
        "--child-raw",
        "--model-uri",
        model_uri,
        "--data",
        str(data),
        "--requests",
        str(count),
        "--batch",
        str(batch),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        raise RuntimeError(f"raw pass failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _Client:
    """One V2 client (one connection) for one thread: ``infer(jpeg)`` -> the decision."""

    def __init__(self, protocol: str, url: str, model: str):
        import numpy as np

        self.np = np
        self.model = model
        if protocol == "http":
            import tritonclient.http as tc

            self.client = tc.InferenceServerClient(
                url.removeprefix("http://"), network_timeout=300.0, connection_timeout=300.0
            )
        else:
            import tritonclient.grpc as tc

            self.client = tc.InferenceServerClient(url)
        self.tc = tc

    def infer(self, jpeg: bytes) -> str:
        inp = self.tc.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(self.np.array([jpeg], dtype=object))
        result = self.client.infer(self.model, [inp])
        decision = result.as_numpy("decision")
        if decision is None or len(decision) != 1:
            raise RuntimeError(f"answer without one decision: {result.get_response()}")
        return decision[0]


def measure_clients(protocol: str, url: str, model: str, blobs: list[bytes], clients: int, requests: int) -> dict:
    """``clients`` threads sending one JPEG per request until ``requests`` are answered."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_index = [0]
    start_gate = threading.Barrier(clients + 1)

    def worker() -> None:
        # Each thread makes its own client: tritonclient.http's gevent connection pool cannot be
        # used from a thread other than the one that made it.
        try:
            conn = _Client(protocol, url, model)
            for i in range(WARM_UP):  # connections open, the server's first batches run
                conn.infer(blobs[i % len(blobs)])
        except Exception as err:  # noqa: BLE001 - reported below: a client that cannot start fails the run
            with lock:
                errors.append(f"warm-up: {type(err).__name__}: {err}")
            return
        finally:
            start_gate.wait()
        try:
            _requests(conn)
        finally:
            conn.client.close()

    def _requests(conn: _Client) -> None:
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= requests:
                return
            t0 = time.perf_counter()
            try:
                conn.infer(blobs[i % len(blobs)])
            except Exception as err:  # noqa: BLE001 - counted and reported, never passed as speed
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(
            f"{protocol} with {clients} clients: {len(errors)} of {requests} requests failed, first: {errors[0]}"
        )
    return {"seconds": seconds, "images": requests, "latencies_ms": [x * 1000 for x in latencies]}


def summarise(mode: str, protocol: str, clients: int, blocks: list[dict]) -> dict:
    """One row from the blocks measured for one server, protocol and client count."""
    ms = sorted(x for b in blocks for x in b["latencies_ms"])
    seconds, images = sum(b["seconds"] for b in blocks), sum(b["images"] for b in blocks)
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 1)  # noqa: E731
    return {
        "mode": f"{mode} {protocol}",
        "clients": clients,
        "images": images,
        "seconds": round(seconds, 2),
        "images_per_s": round(images / seconds, 2),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
    }


def largest_request(url: str, model: str, blobs: list[bytes], images: int) -> None:
    """One V2 request of ``images`` JPEGs (the most one request may hold): the server's largest
    forward pass."""
    import numpy as np
    import tritonclient.http as tc

    client = tc.InferenceServerClient(url.removeprefix("http://"), network_timeout=600.0, connection_timeout=600.0)
    chunk = [blobs[i % len(blobs)] for i in range(images)]
    inp = tc.InferInput("image", [len(chunk)], "BYTES")
    inp.set_data_from_numpy(np.array(chunk, dtype=object))
    decisions = client.infer(model, [inp]).as_numpy("decision")
    if decisions is None or len(decisions) != len(chunk):
        raise RuntimeError(f"a request of {len(chunk)} images did not get {len(chunk)} decisions")


def max_request_images(server_args: list[str]) -> int:
    """The most images one request may hold: the server's ``--max-batch`` when passed, else its default."""
    from components.core.serving.config import DEFAULT_MAX_BATCH

    args = list(server_args)
    for i, arg in enumerate(args):
        if arg == "--max-batch" and i + 1 < len(args):
            return int(args[i + 1])
        if arg.startswith("--max-batch="):
            return int(arg.split("=", 1)[1])
    return DEFAULT_MAX_BATCH


def server_memory(proc, url: str, model: str, blobs: list[bytes], images: int) -> dict:
    """The server's peak resident memory (VmHWM) after the rows, then after one request of
    ``images`` images, against the InferenceService's memory limit."""
    from benchmarks.memory import proc_status
    from benchmarks.scoring import quantity_mb
    from components.core.deploy.inference_service import build_inference_service

    after_rows = proc_status(proc.pid).get("VmHWM", float("nan"))
    largest_request(url, model, blobs, images)
    peak = proc_status(proc.pid).get("VmHWM", float("nan"))
    isvc = build_inference_service("bench", "bench", "image", "s3://bucket/model", "model", "1")
    limit = isvc["spec"]["predictor"]["containers"][0]["resources"]["limits"]["memory"]
    return {
        "peak_rss_mb_after_rows": round(after_rows, 1),
        "largest_request_images": images,
        "peak_rss_mb": round(peak, 1),
        "memory_limit": limit,
        "peak_over_limit": round(peak / quantity_mb(limit), 3),
    }


def served_model_name(url: str) -> str:
    """The model the server at ``url`` serves: KServe's model list (``GET /v2/models``), else the
    ``model`` field that the server before issue 25 put in its server metadata."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/v2/models", timeout=10) as r:
            return json.load(r)["models"][0]
    except urllib.error.HTTPError:
        with urllib.request.urlopen(f"{url}/v2", timeout=10) as r:
            return json.load(r)["model"]


class _Server:
    """``skin-cancer serve`` in a subprocess on free ports: this checkout's, or the one in
    ``tree`` (an older checkout, run with its own code; HTTP only, as before issue 25)."""

    def __init__(self, model_uri: str, log_path: Path, tree: Path | None = None, server_args: list[str] = ()):
        http_port = free_port()
        self.url = f"http://127.0.0.1:{http_port}"
        args = ["--port", str(http_port)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if tree is None:
            grpc_port = free_port()
            self.grpc_url = f"127.0.0.1:{grpc_port}"
            args += ["--grpc-port", str(grpc_port), *server_args]
        else:
            self.grpc_url = None
            env["PYTHONPATH"] = str(tree)  # its components/ and pipelines/, ahead of the installed ones
        self.proc = start(
            [sys.executable, "-m", "pipelines.cli", "serve", "--model-uri", model_uri, *args],
            f"{self.url}/v2/health/ready",
            log_path,
            timeout=300,
            env=env,
            stop_timeout=60,
            cwd=tree,
        )

    def close(self) -> None:
        stop(self.proc, timeout=60)


def run_benchmark(
    model_uri: str,
    data: Path,
    out: Path,
    requests: int,
    clients: list[int],
    protocols: list[str],
    batch: int,
    url: str | None = None,
    grpc_url: str | None = None,
    server_args: list[str] = (),
    baseline_tree: Path | None = None,
    log=print,
) -> dict:
    from benchmarks.machine import machine_info, machine_line

    out.mkdir(parents=True, exist_ok=True)
    raws = [measure_raw(model_uri, data, requests, batch)]  # and once more after the servers: drift
    log(json.dumps(raws[0]))
    blobs = load_images(data, requests)
    results = []
    memory = None
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-serving-")))
        # (label, protocol, address); the servers are all up and idle while one is measured
        targets = []
        if baseline_tree is not None:
            old = stack.enter_context(contextlib.closing(_Server(model_uri, tmp / "baseline.log", tree=baseline_tree)))
            targets.append(("baseline", "http", old.url))
        new = None
        if url is None:
            new = stack.enter_context(
                contextlib.closing(_Server(model_uri, tmp / "server.log", server_args=server_args))
            )
            url, grpc_url = new.url, new.grpc_url
        for protocol in protocols:
            if protocol == "grpc" and not grpc_url:
                log("server: no gRPC address; gRPC skipped")
                continue
            targets.append(("server", protocol, url if protocol == "http" else grpc_url))
        models = {
            address: served_model_name(address if address.startswith("http") else url) for _, _, address in targets
        }
        for c in clients:
            blocks: dict[tuple, list[dict]] = {(label, protocol): [] for label, protocol, _ in targets}
            for _ in range(ROUNDS):  # the servers take turns, so a slow minute of the machine hits all alike
                for label, protocol, address in targets:
                    blocks[(label, protocol)].append(
                        measure_clients(protocol, address, models[address], blobs, c, requests)
                    )
            for (label, protocol), measured in blocks.items():
                results.append(summarise(label, protocol, c, measured))
                log(json.dumps(results[-1]))
        if new is not None:  # a server at --url is another machine's process
            memory = server_memory(new.proc, url, served_model_name(url), blobs, max_request_images(server_args))
            log(json.dumps(memory))
    raws.append(measure_raw(model_uri, data, requests, batch))
    log(json.dumps(raws[1]))
    seconds = sum(r["seconds"] for r in raws)
    raw = {
        "mode": f"raw batch {batch}",
        "images": 2 * requests,
        "seconds": round(seconds, 2),
        "images_per_s": round(2 * requests / seconds, 2),
        "runs_images_per_s": [r["images_per_s"] for r in raws],
    }
    most = max(clients)
    ratios = {r["mode"]: round(r["images_per_s"] / raw["images_per_s"], 3) for r in results if r["clients"] == most}
    single = {r["mode"]: r["p50_ms"] for r in results if r["clients"] == 1}
    report = {
        "machine": machine_line(machine_info()),
        "model_uri": model_uri,
        "batch": batch,
        "raw": raw,
        "results": results,
        f"ratio_at_{most}_clients": ratios,
        "single_client_p50_ms": single,
        "server_memory": memory,
        "targets": {
            f"ratio_at_{most}_clients": TARGET_RATIO,
            "single_client_p50_over_baseline": TARGET_P50,
            "peak_over_limit": TARGET_MEMORY,
        },
    }
    if "baseline http" in single and "server http" in single:
        report["single_client_p50_over_baseline"] = round(single["server http"] / single["baseline http"], 3)
    lines = [
        f"Serving benchmark ({report['machine']}; model {model_uri}; raw batch {batch}; "
        f"{ROUNDS} x {requests} single-image requests per row, the servers taking turns)",
        "",
        "| measurement | clients | images/s | p50 ms | p99 ms | / raw |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {raw['mode']} (runs: {', '.join(map(str, raw['runs_images_per_s']))}) | - | "
        f"{raw['images_per_s']} | - | - | 1.000 |",
    ]
    lines += [
        f"| {r['mode']} | {r['clients']} | {r['images_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
        f"{r['images_per_s'] / raw['images_per_s']:.3f} |"
        for r in results
    ]
    lines += [
        "",
        *(f"{mode}, {most} clients / raw: {ratio} (target >= {TARGET_RATIO})" for mode, ratio in ratios.items()),
    ]
    if "single_client_p50_over_baseline" in report:
        lines.append(
            f"server http / baseline http, single-client p50: {report['single_client_p50_over_baseline']} "
            f"(target <= {TARGET_P50})"
        )
    if memory:
        lines.append(
            f"server peak RSS: {memory['peak_rss_mb_after_rows']} MB after the rows, {memory['peak_rss_mb']} MB after "
            f"one request of {memory['largest_request_images']} images; / the InferenceService's memory limit "
            f"({memory['memory_limit']}): {memory['peak_over_limit']} (target <= {TARGET_MEMORY})"
        )
    (out / "serving.json").write_text(json.dumps(report, indent=1))
    (out / "serving.md").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> int:
    from benchmarks.data import find_default_data

    ap = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-uri", required=True, help="a Model directory or models:/NAME@ALIAS")
    ap.add_argument("--data", type=Path, default=None, help="the real images (default ../shared/data/skin-cancer)")
    ap.add_argument("--requests", type=int, default=192, help="single-image requests per block (2 blocks a row)")
    ap.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated")
    ap.add_argument("--protocols", default="http,grpc")
    ap.add_argument("--batch", type=int, default=16, help="the raw pass's batch size")
    ap.add_argument("--url", help="benchmark the server already running here instead of starting one")
    ap.add_argument("--grpc-url", help="its gRPC address (HOST:PORT)")
    ap.add_argument(
        "--baseline-tree",
        type=Path,
        help="also measure `skin-cancer serve` of this checkout first (HTTP; e.g. a git worktree of "
        "the commit before the server moved to KServe)",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/bench-serving"))
    ap.add_argument("--child-raw", action="store_true", help=argparse.SUPPRESS)
    args, server_args = ap.parse_known_args(argv)
    data = args.data or find_default_data()
    if args.child_raw:
        print(json.dumps(_raw_child(args.model_uri, str(data), args.requests, args.batch)))
        return 0
    run_benchmark(
        args.model_uri,
        data,
        args.out,
        args.requests,
        [int(c) for c in args.clients.split(",")],
        args.protocols.split(","),
        args.batch,
        args.url,
        args.grpc_url,
        server_args,
        args.baseline_tree,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
