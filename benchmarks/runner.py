"""Each measurement in a fresh Python process: the parent side (:class:`Runner`) and the child
side (``python -m benchmarks _child METHOD IN.json OUT.json``), which records its peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import end_to_end, preprocessing, training_input
from benchmarks.memory import peak_rss_mb
from benchmarks.s3server import S3Server

METHODS = {
    "project_preprocess": preprocessing.m_project_preprocess,
    "reference_preprocess": preprocessing.m_reference_preprocess,
    "decode": preprocessing.m_decode,
    "fetch_only": preprocessing.m_fetch_only,
    "train_input": training_input.m_train_input,
    "end_to_end": end_to_end.m_end_to_end,
}
REPO_ROOT = Path(__file__).resolve().parents[1]  # on the children's PYTHONPATH: `benchmarks` is not installed


def child_main(argv: list[str]) -> int:
    """``python -m benchmarks _child METHOD IN.json OUT.json``: run one method, record its peak memory."""
    method, in_path, out_path = argv
    kwargs = json.loads(Path(in_path).read_text())
    result = METHODS[method](**kwargs)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(out_path).write_text(json.dumps(result, default=float))
    return 0


class Runner:
    """Runs each measured method in a fresh Python process and collects its result."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        server: S3Server | None = None,
        timeout: float = 7200,
        log=print,
        machine: str = "",
    ):
        self.workdir = workdir
        self.machine = machine
        self.env = env or {}
        self.server = server
        self.timeout = timeout
        self.log = log
        self.failures: list[str] = []
        self._n = 0

    def run(self, label: str, method: str, timeout: float | None = None, **kwargs) -> dict:
        self._n += 1
        stem = self.workdir / f"{self._n:02d}-{method}"
        in_path, out_path = stem.with_suffix(".in.json"), stem.with_suffix(".out.json")
        in_path.write_text(json.dumps(kwargs))
        # No AWS_* from the caller (AWS_ENDPOINT_URL_S3, a profile...): only the benchmark's own endpoint.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **self.env})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        load = [round(v, 2) for v in os.getloadavg()]
        server_cpu = self.server.cpu_seconds() if self.server else None
        self.log(f"  {label} ...")
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks", "_child", method, str(in_path), str(out_path)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout or self.timeout,
            )
            ok = proc.returncode == 0 and out_path.is_file()
            error = None if ok else (proc.stderr or proc.stdout)[-2500:]
        except subprocess.TimeoutExpired:
            ok, error = False, f"timed out after {timeout or self.timeout:.0f} s"
        process_s = time.perf_counter() - started
        result = json.loads(out_path.read_text()) if ok else {}
        result.update(
            {
                "label": label,
                "method": method,
                "ok": ok,
                "process_seconds": round(process_s, 2),
                "machine": self.machine,
                "load_average_before": load,
            }
        )
        if self.server is not None:
            result["server_cpu_seconds"] = round(self.server.cpu_seconds() - server_cpu, 2)
        if not ok:
            result["error"] = error
            self.failures.append(f"{label}: {((error or '').strip().splitlines() or ['failed'])[-1]}")
            self.log(f"    FAILED: {(error or '').strip()[-600:]}")
        else:
            ips = result.get("images_per_s")
            peak = result.get("peak_rss_mb_largest_process", result.get("peak_rss_mb"))
            self.log(
                f"    {result.get('images')} images in {result.get('seconds')} s"
                + (f" = {ips} images/s" if ips else "")
                + f", peak {peak} MB"
            )
        return result
