"""The machine a run measures on: cores, memory, CPU model, library versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def effective_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    mem = meminfo()
    return {
        "cores": os.cpu_count(),
        "cores_usable": effective_cores(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(mem.get("MemTotal", 0) / 2**30, 1),
        "memory_available_gib_at_start": round(mem.get("MemAvailable", 0) / 2**30, 1),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: version(m) for m in ("tensorflow", "keras", "numpy", "pillow", "boto3", "moto", "kfp")},
    }


def machine_line(m: dict) -> str:
    return (
        f"{m['cores_usable']} cores ({m['cpu_model']}), {m['memory_gib']} GiB memory, "
        f"Python {m['python']}, TensorFlow {m['versions'].get('tensorflow')}"
    )
