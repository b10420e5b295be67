"""The project's lock as the tests read it: uv.lock (the one lock) and the pip-format exports
of it that the images install (images/requirements.lock, images/mlflow-server.lock)."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
UV_LOCK = ROOT / "uv.lock"
RUNTIME_LOCK = ROOT / "images" / "requirements.lock"
MLFLOW_LOCK = ROOT / "images" / "mlflow-server.lock"
# scripts/lock.sh's exports: file -> the `uv export` selection that writes it
EXPORTS = {RUNTIME_LOCK: ["--no-default-groups"], MLFLOW_LOCK: ["--only-group", "mlflow-server"]}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+?)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def uv_binary() -> Path:
    """The uv that uv.lock pins, installed in the tested environment (the dev extra)."""
    return Path(sys.executable).with_name("uv")


def uv_lock() -> dict:
    return tomllib.loads(UV_LOCK.read_text())


def exported_pins(path: Path, environment: dict[str, str] | None = None) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a requirements export, for the packages whose markers hold in
    ``environment`` (this interpreter's when None)."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(" "):
            h = line.strip().rstrip("\\").strip()
            if current is not None and h.startswith("--hash="):
                pins[current][1].append(h.removeprefix("--hash="))
            continue
        m = _PIN.match(line)
        assert m, f"{path.name}: not a pinned requirement: {line!r}"
        name, version, marker = canonicalize_name(m.group(1)), m.group(2), m.group(3)
        if marker and not Marker(marker).evaluate(environment):
            current = None
            continue
        pins[name] = (version, [])
        current = name
    return pins
