"""Stalled and vanishing uploads, in process: a body that stops arriving gets 408, a slow but
steady one is not cut off, a client that disconnects mid-upload is not a server error (no
waiting for the server's 30 s default: the app runs in this process)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from tests.support.serving_helpers import MODEL_NAME, MODEL_VERSION, multipart

# --- stalled and vanishing uploads, in process (no waiting for the server's 30 s default) --------


class _StubModel:
    """Enough of a served model for requests that never reach it."""

    name, version = MODEL_NAME, MODEL_VERSION


def _asgi_post(
    path: str, content_type: str, pieces: list[tuple[float, bytes, bool]], then: str, timeout_s: float
) -> tuple[list[dict], float]:
    """POST to the app in process: each piece is (delay, bytes, more_body); after the last the
    client either stalls for ever (``then="stall"``) or disconnects. Returns the messages sent
    and the seconds the app took."""
    from fastapi import FastAPI

    from components.core.serving.app import install_routes
    from components.core.serving.config import ServingSettings

    # Our routes and limits on a bare app: the server adds the same to KServe's app, whose V2
    # routes are behind the same BodyLimit middleware.
    app = install_routes(FastAPI(), _StubModel(), ServingSettings(body_timeout_s=timeout_s))

    async def main():
        queue, sent = list(pieces), []

        async def receive():
            if queue:
                delay, body, more = queue.pop(0)
                await asyncio.sleep(delay)
                return {"type": "http.request", "body": body, "more_body": more}
            if then == "disconnect":
                return {"type": "http.disconnect"}
            await asyncio.Event().wait()  # stalls until cancelled

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"x"), (b"content-type", content_type.encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        t0 = time.monotonic()
        await asyncio.wait_for(app(scope, receive, send), 20)  # the app must not hang, nor raise
        return sent, time.monotonic() - t0

    return asyncio.run(main())


def _status_headers_body(sent: list[dict]) -> tuple[int, dict, bytes]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closed():
    form, ctype = multipart(b"\xff\xd8\xff" + b"x" * 1000, "a.jpg", "image/jpeg")
    sent, took = _asgi_post("/predict", ctype, [(0.0, form[:500], True)], "stall", timeout_s=0.3)
    status, headers, body = _status_headers_body(sent)
    assert status == 408 and headers.get("connection") == "close", (status, headers)
    assert "stopped arriving" in json.loads(body)["error"]
    assert took < 15  # answered after the 0.3 s idle timeout, not held until the client goes


def test_a_slow_but_steady_body_is_not_cut_off():
    """The timeout is for silence between pieces, not for the whole upload."""
    form, ctype = multipart(b"\xff\xd8\xff" + b"x" * 1000, "a.jpg", "image/jpeg")
    form = form.replace(b'name="file"', b'name="other"')  # complete, but without the 'file' field
    pieces = [(0.1, form[i : i + 300], i + 300 < len(form)) for i in range(0, len(form), 300)]
    sent, took = _asgi_post("/predict", ctype, pieces, "stall", timeout_s=0.3)
    status, _, body = _status_headers_body(sent)
    assert took > 0.3 and status == 400 and "field 'file' is missing" in json.loads(body)["error"], (status, body)


def test_a_client_that_disconnects_mid_upload_is_not_a_server_error(caplog):
    form, ctype = multipart(b"\xff\xd8\xff" + b"x" * 1000, "a.jpg", "image/jpeg")
    with caplog.at_level(logging.INFO, logger="components.core.serving"):
        sent, _ = _asgi_post("/predict", ctype, [(0.0, form[:500], True)], "disconnect", timeout_s=5)
    assert all(m.get("status") != 500 for m in sent)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "client disconnected before sending the whole request" in caplog.text
