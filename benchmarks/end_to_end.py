"""End-to-end measurement (runs in its own process): ``skin-cancer run`` with default local
settings, its wall time, each task's time from kfp.local's log, and the process tree's memory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.memory import tree_memory_mb

_TASK_RE = re.compile(
    r"^(\d{1,2}):(\d{2}):(\d{2})\.(\d+) - \w+ - "
    r"(?:Executing task '([^']+)'|Task '([^']+)' finished with status (\w+))"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_kfp_log(text: str) -> list[dict]:
    """Per-task wall times from kfp.local's log lines (``HH:MM:SS.fff - INFO - Executing task 'x'``)."""
    stages: list[dict] = []
    open_tasks: dict[str, list[dict]] = {}
    counts: dict[str, int] = {}
    last, offset = -1.0, 0.0
    for raw in text.splitlines():
        m = _TASK_RE.match(_ANSI.sub("", raw).strip())
        if not m:
            continue
        h, mi, s, frac = m.group(1, 2, 3, 4)
        t = int(h) * 3600 + int(mi) * 60 + int(s) + float(f"0.{frac}") + offset
        if t < last:  # past midnight
            offset += 86400
            t += 86400
        last = t
        if m.group(5):
            name = m.group(5)
            counts[name] = counts.get(name, 0) + 1
            stage = {"task": name if counts[name] == 1 else f"{name} #{counts[name]}", "start": t}
            stages.append(stage)
            open_tasks.setdefault(name, []).append(stage)
        else:
            pending = open_tasks.get(m.group(6)) or []
            if pending:
                stage = pending.pop(0)
                stage["seconds"] = round(t - stage.pop("start"), 3)
                stage["status"] = m.group(7)
    for stage in stages:
        stage.pop("start", None)
    return stages


def m_end_to_end(data_uri: str, workdir: str, run_timeout: float, extra_args: list[str] | None = None) -> dict:
    """``skin-cancer run`` with default local settings; wall time, per stage, peak memory of the tree."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    summary_path = work / "summary.json"
    log_path = work / "run.log"
    # -v: kfp.local's task lines (parse_kfp_log reads them) on the console, as well as in the run's log file.
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "-v",
        "run",
        "--data",
        data_uri,
        "--workdir",
        str(work),
        "--summary-json",
        str(summary_path),
        *(extra_args or []),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the local default store
    started = time.perf_counter()
    tree_peak, largest = 0.0, 0.0
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            if time.perf_counter() - started > run_timeout:
                proc.kill()
                proc.wait()
                break
            total, big = tree_memory_mb(proc.pid)  # sampled: every 0.5 s
            tree_peak, largest = max(tree_peak, total), max(largest, big)
            time.sleep(0.5)
        rc = proc.returncode if time.perf_counter() - started <= run_timeout else "timeout"
    wall = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    result = {
        "images": 0,
        "seconds": round(wall, 3),
        "returncode": rc,
        "command": cmd[1:],
        "stages": parse_kfp_log(text),
        "peak_rss_mb_largest_process": round(largest, 1),
        "peak_rss_mb_all_processes": round(tree_peak, 1),
        "log": str(log_path),
    }
    if rc != 0:
        result["log_tail"] = text[-3000:]
        raise RuntimeError(f"skin-cancer run exited {rc}: {text[-1500:]}")
    summary = json.loads(summary_path.read_text())
    result["pipeline_wall_seconds"] = round(summary.get("wall_seconds", 0.0), 3)
    result["models"] = [
        {
            "name": m["name"],
            "seconds": round(m["seconds"], 1),
            "val_accuracy": m["val"]["accuracy"],
            "test_accuracy": m["test"]["accuracy"],
        }
        for m in summary.get("models", [])
    ]
    result["winner"] = summary.get("winner")
    for out in sorted(work.glob("pipeline-root/*/preprocess/executor_output.json")):
        report = json.loads(json.loads(out.read_text())["parameterValues"]["report"])
        result["images"] = report["total_images"]
        result["preprocess_report"] = {
            "seconds": round(report["seconds"], 3),
            "images_per_second": report["images_per_second"],
            "image_size": report["image_size"],
            "splits": report["splits"],
        }
    return result
