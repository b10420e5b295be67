"""A quiet JSON request handler for the tests' stand-in HTTP APIs (KFP, Kubernetes, KServe)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler


class JsonHandler(BaseHTTPRequestHandler):
    """Subclass and add ``do_GET``/``do_POST``/...; answer with :meth:`send_json`."""

    def log_message(self, *args) -> None:  # keep pytest output to the assertions
        pass

    def send_json(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
