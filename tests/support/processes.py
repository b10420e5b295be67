"""The helper processes that tests and benchmarks start (S3 and MLflow servers, `skin-cancer serve`):
a free port for each, waiting until one answers, and stopping one without leaving it behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Return once ``url`` answers 2xx. Fails early, with the log's tail, if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if 200 <= r.status < 300:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{_tail(log)}")


def start(
    cmd: list[str],
    ready_url: str,
    log: Path,
    timeout: float = 120.0,
    env: dict | None = None,
    stop_timeout: float = 30.0,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start ``cmd`` with its output in ``log`` and wait until ``ready_url`` answers; a process that
    does not get ready is stopped before the error is raised."""
    fh = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    fh.close()  # the child holds its own descriptor
    try:
        wait_http(ready_url, timeout, proc, log)
    except BaseException:
        stop(proc, stop_timeout)
        raise
    return proc


def stop(proc: subprocess.Popen | None, timeout: float) -> None:
    """Terminate ``proc``, and kill it if it has not exited within ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(log: Path | None) -> str:
    return Path(log).read_text(errors="replace")[-3000:] if log and Path(log).exists() else ""


def start_mlflow_server(root: Path, *args: str, env: dict | None = None):
    """A real `mlflow server` (SQLite backend, served artifacts) on 127.0.0.1; (process, URI).
    ``args``: more flags (e.g. ``--app-name basic-auth``)."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", *args, "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    proc = start([*cmd, "--workers", "1"], f"{uri}/health", root / "server.log", timeout=120, env=env)
    return proc, uri
