"""A fault-injecting HTTP proxy on 127.0.0.1, for S3 (moto) and MLflow servers in the tests.

Clients point at :attr:`FaultProxy.url` instead of the server. The proxy forwards each
request to the real server, except where its plan says to inject a fault:

- ``"500"``, ``"503"``: the S3-style error ``InternalError`` / ``ServiceUnavailable``
- ``"slowdown"``: HTTP 503 ``SlowDown`` (S3's throttling answer)
- ``"deny"``: HTTP 403 ``AccessDenied`` (a permanent error)
- ``"reset"``: the connection is reset (TCP RST) before any answer; the server never sees the request
- ``"lost"``: the request reaches the server, then the connection is reset instead of
  answering: the server acted, the client does not know (the case that duplicates POSTs)
- ``"truncate"``: the server's answer is cut off half way through its body, then reset
- ``"slow"``: the answer is held back ``slow_seconds`` (longer than the client's read timeout)
- ``"hang"``: no answer at all until the client gives up
- ``"trickle"``: the answer's headers at once, then its body one byte every ``trickle_seconds``
  (each byte within the client's read timeout, the whole body far beyond any sane deadline)

Every request is recorded in :attr:`FaultProxy.log` as ``(n, method, path, fault)``.
Nothing here patches a client: the faults travel over real sockets.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable
from urllib.parse import urlsplit

Plan = Callable[[int, str, str], "str | None"]

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}

S3_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "deny": (403, "AccessDenied", "Access Denied"),
}


def every(
    n: int,
    faults: Iterable[str],
    start: int = 1,
    methods: Iterable[str] | None = None,
    path_contains: str | None = None,
) -> Plan:
    """Fault every ``n``-th matching request, cycling through ``faults``."""
    kinds = list(faults)
    wanted = {m.upper() for m in methods} if methods else None
    state = {"seen": 0, "fired": 0}
    lock = threading.Lock()

    def plan(count: int, method: str, path: str) -> str | None:
        if wanted and method not in wanted:
            return None
        if path_contains and path_contains not in path:
            return None
        with lock:
            state["seen"] += 1
            if state["seen"] >= start and (state["seen"] - start) % n == 0:
                kind = kinds[state["fired"] % len(kinds)]
                state["fired"] += 1
                return kind
        return None

    return plan


def always(fault: str, path_contains: str | None = None, methods: Iterable[str] | None = None) -> Plan:
    wanted = {m.upper() for m in methods} if methods else None

    def plan(count: int, method: str, path: str) -> str | None:
        if (path_contains is None or path_contains in path) and (wanted is None or method in wanted):
            return fault
        return None

    return plan


def first(fault: str, path_contains: str, times: int = 1, methods: Iterable[str] | None = None) -> Plan:
    """Fault the first ``times`` requests whose path contains ``path_contains``."""
    wanted = {m.upper() for m in methods} if methods else None
    state = {"left": times}
    lock = threading.Lock()

    def plan(count: int, method: str, path: str) -> str | None:
        if path_contains in path and (wanted is None or method in wanted):
            with lock:
                if state["left"] > 0:
                    state["left"] -= 1
                    return fault
        return None

    return plan


def combine(*plans: Plan) -> Plan:
    """The first plan that names a fault wins."""

    def plan(count: int, method: str, path: str) -> str | None:
        for p in plans:
            fault = p(count, method, path)
            if fault:
                return fault
        return None

    return plan


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        plan: Plan | None = None,
        slow_seconds: float = 3.0,
        hang_seconds: float = 60.0,
        trickle_seconds: float = 0.2,
    ):
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.plan = plan or (lambda n, m, p: None)
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self.trickle_seconds = trickle_seconds
        self.log: list[tuple[int, str, str, str | None]] = []
        self._count = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reset(self) -> None:
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass
                self.close_connection = True

            def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    if body or self.command in ("POST", "PUT", "PATCH"):
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    return resp.status, resp.reason, resp.getheaders(), data
                finally:
                    conn.close()

            def _send(
                self, status: int, reason: str, headers, data: bytes, cut: bool = False, trickle: bool = False
            ) -> None:
                self.send_response(status, reason)
                length = None
                for k, v in headers:
                    if k.lower() == "content-length" and self.command == "HEAD":
                        length = v
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", length or "0")
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if cut:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._reset()
                    return
                if trickle:
                    for i in range(len(data)):
                        if proxy._stopping.wait(proxy.trickle_seconds):
                            break
                        try:
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            break
                    self._reset()
                    return
                self.wfile.write(data)

            def _handle(self) -> None:
                body = self._body()
                with proxy._lock:
                    proxy._count += 1
                    n = proxy._count
                fault = proxy.plan(n, self.command, self.path)
                with proxy._lock:
                    proxy.log.append((n, self.command, self.path, fault))
                if fault in S3_ERRORS:
                    status, code, message = S3_ERRORS[fault]
                    xml = (
                        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                        f"<Message>{message}</Message><RequestId>fault-{n}</RequestId></Error>"
                    ).encode()
                    self._send(status, "", [("Content-Type", "application/xml")], xml)
                    return
                if fault == "reset":
                    self._reset()
                    return
                if fault == "hang":
                    proxy._stopping.wait(proxy.hang_seconds)
                    self._reset()
                    return
                if fault == "slow":
                    proxy._stopping.wait(proxy.slow_seconds)
                status, reason, headers, data = self._forward(body)
                if fault == "lost":
                    self._reset()
                    return
                small = len(data) < 2
                self._send(
                    status, reason, headers, data, cut=(fault == "truncate" and not small), trickle=(fault == "trickle")
                )

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except (ConnectionError, OSError, ValueError):
                    self.close_connection = True

            def finish(self):
                try:
                    super().finish()
                except (OSError, ValueError):
                    pass

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = lambda self: self._handle()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def faults(self) -> list[str]:
        """The faults injected so far, in order."""
        with self._lock:
            return [f for _, _, _, f in self.log if f]

    def requests_to(self, path_contains: str) -> list[tuple[int, str, str, str | None]]:
        with self._lock:
            return [entry for entry in self.log if path_contains in entry[2]]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
