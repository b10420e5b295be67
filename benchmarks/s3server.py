"""A moto S3 server on 127.0.0.1 in its own process: the endpoint every S3 measurement reads from."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.memory import proc_status
from tests.support.processes import free_port, stop

BUCKET = "skin-cancer-bench"
PREFIX = "data"

_SERVER_CODE = """
import logging, sys, time
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines: less server CPU
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


class S3Server:
    """A moto S3 server on 127.0.0.1 in its own process (its memory and CPU are not the measured ones)."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> "S3Server":
        self.port = free_port()
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.logdir / "s3-server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER_CODE, str(self.port)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited: see {self.logdir / 's3-server.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the S3 server did not start within 60 s")
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc, timeout=15)
        self._log.close()

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}",
            "AWS_ACCESS_KEY_ID": "bench-key-id",
            "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, pool: int = 16):
        import boto3
        from botocore.config import Config

        e = self.env
        return boto3.session.Session().client(
            "s3",
            endpoint_url=e["AWS_ENDPOINT_URL"],
            region_name=e["AWS_DEFAULT_REGION"],
            aws_access_key_id=e["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=e["AWS_SECRET_ACCESS_KEY"],
            config=Config(max_pool_connections=pool, retries={"total_max_attempts": 8, "mode": "standard"}),
        )

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError, AttributeError):
            return float("nan")

    def memory_mb(self) -> dict[str, float | None]:
        st = proc_status(self.proc.pid) if self.proc else {}
        return {
            "rss_mb": round(st["VmRSS"], 1) if "VmRSS" in st else None,
            "peak_rss_mb": round(st["VmHWM"], 1) if "VmHWM" in st else None,
        }

    def upload(self, items: list[tuple[str, Path]], prefix: str = PREFIX, rename=None, workers: int = 16) -> int:
        """Upload ``items`` concurrently under ``prefix``; ``rename(relpath)`` gives new keys (copies)."""
        client = self.client(pool=workers)

        def put(item: tuple[str, Path]) -> int:
            rel, path = item
            body = path.read_bytes()
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{rename(rel) if rename else rel}", Body=body)
            return len(body)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return sum(pool.map(put, items))
