"""Memory and CPU of a process: VmRSS/VmHWM from /proc, and the mark that starts a measurement."""

from __future__ import annotations

import os
import time
from pathlib import Path


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB (empty when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def rss_now_mb() -> float:
    return proc_status().get("VmRSS", float("nan"))


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (VmHWM).

    Not ``ru_maxrss``: on Linux that survives fork and exec, so a child started by a big
    parent would report the parent's peak instead of its own.
    """
    return round(proc_status().get("VmHWM", float("nan")), 1)


def tree_memory_mb(root: int) -> tuple[float, float]:
    """(sum of VmRSS over ``root`` and its descendants, the largest VmHWM among them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, largest, todo = 0.0, 0.0, [root]
    while todo:
        pid = todo.pop()
        st = proc_status(pid)
        total += st.get("VmRSS", 0.0)
        largest = max(largest, st.get("VmHWM", 0.0))
        todo += children.get(pid, [])
    return total, largest


def _cpu_self() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Mark:
    """Start of the measured part: after imports and setup, before the work."""

    def __init__(self):
        self.rss_mb = rss_now_mb()
        self.cpu = _cpu_self()
        self.t = time.perf_counter()

    def done(self, images: int, **extra) -> dict:
        seconds = time.perf_counter() - self.t
        return {
            "images": int(images),
            "seconds": round(seconds, 3),
            "images_per_s": round(images / seconds, 2) if seconds > 0 else None,
            "cpu_seconds": round(_cpu_self() - self.cpu, 2),
            "rss_before_work_mb": round(self.rss_mb, 1),
            **extra,
        }
