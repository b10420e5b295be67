"""One lock for every install (issue 21): uv.lock pins the runtime, the dev/test extra and the
mlflow-server group with hashes; the tests run in exactly that set (scripts/install.sh: `uv sync
--locked`), and the images install the runtime part of it (images/requirements.lock, an export).

A lock that is merely older than the registry is not a failure: nothing here asks the registry."""

from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.lockfile import EXPORTS, ROOT, RUNTIME_LOCK, exported_pins, uv_binary, uv_lock

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])


def _declared() -> list[tuple[str, Requirement]]:
    """Every requirement pyproject.toml states, with where it is stated."""
    out = [("dependencies", Requirement(r)) for r in PYPROJECT["project"]["dependencies"]]
    for extra, reqs in PYPROJECT["project"].get("optional-dependencies", {}).items():
        out += [(f"extra {extra}", Requirement(r)) for r in reqs]
    for group, reqs in PYPROJECT.get("dependency-groups", {}).items():
        out += [(f"group {group}", Requirement(r)) for r in reqs if isinstance(r, str)]
    return out


def lock_violations(declared: list[tuple[str, Requirement]], packages: list[dict]) -> list[str]:
    """Bounds of pyproject.toml that a locked version breaks, or that nothing in the lock meets."""
    locked: dict[str, list[str]] = {}
    for p in packages:
        locked.setdefault(canonicalize_name(p["name"]), []).append(p["version"])
    problems = []
    for where, req in declared:
        versions = locked.get(canonicalize_name(req.name))
        if not versions:
            problems.append(f"{req} ({where}) is not in uv.lock")
            continue
        problems += [
            f"uv.lock pins {req.name}=={v}, outside {req} ({where})"
            for v in versions
            if not req.specifier.contains(Version(v), prereleases=True)
        ]
    return problems


def test_every_locked_version_satisfies_pyprojects_bounds():
    assert lock_violations(_declared(), uv_lock()["package"]) == []


def test_the_bounds_check_catches_a_pin_outside_them():
    packages = [{"name": "Keras", "version": "3.16.0"}, {"name": "numpy", "version": "2.4.6"}]
    declared = [
        ("dependencies", Requirement("keras>=3.14,<3.16")),
        ("dependencies", Requirement("numpy>=1.26")),
        ("extra dev", Requirement("pytest>=8")),
    ]
    assert lock_violations(declared, packages) == [
        "uv.lock pins keras==3.16.0, outside keras<3.16,>=3.14 (dependencies)",
        "pytest>=8 (extra dev) is not in uv.lock",
    ]


def test_every_locked_package_has_hashes():
    missing = [
        p["name"]
        for p in uv_lock()["package"]
        if p.get("source", {}).get("registry")
        and not all(f.get("hash") for f in p.get("wheels", []) + [p.get("sdist", {"hash": "x"})])
    ]
    assert missing == []


@pytest.mark.parametrize("path", list(EXPORTS), ids=lambda p: p.name)
def test_the_image_locks_are_uv_locks_current_export(path):
    """What the Dockerfile installs is exactly uv.lock's runtime part (or the mlflow-server group):
    `make lock` rewrites both after any change of uv.lock."""
    uv = uv_binary()
    assert uv.is_file(), f"{uv} missing: bash scripts/install.sh installs uv from the lock"
    out = subprocess.run(
        [
            str(uv),
            "export",
            "--frozen",
            "--no-emit-project",
            "--no-header",
            "--no-annotate",
            "--format",
            "requirements-txt",
            *EXPORTS[path],
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    ).stdout
    body = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert body == out.splitlines(), f"{path.relative_to(ROOT)} is stale: run `bash scripts/lock.sh --check`"


def test_the_runtime_lock_holds_no_test_tools_and_every_runtime_dependency():
    pins = exported_pins(RUNTIME_LOCK)
    runtime = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    # The dev extra may name a runtime package again for an extra of it (mlflow[auth]): not a test tool.
    dev = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not (dev - runtime) & set(pins)
    assert runtime <= set(pins)
    assert all(hashes for _, hashes in pins.values())


def test_the_tested_environment_is_exactly_the_lock():
    """Every distribution in the venv running the tests is one uv.lock pins, at its version, and
    every package the lock pins for this platform (runtime + dev extra) is installed.
    uv checked each file's hash against uv.lock when it installed it (`uv sync --locked`)."""
    uv = uv_binary()
    out = subprocess.run(
        [
            str(uv),
            "export",
            "--frozen",
            "--no-emit-project",
            "--no-header",
            "--no-annotate",
            "--extra",
            "dev",
            "--no-default-groups",
            "--format",
            "requirements-txt",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    ).stdout
    tmp = ROOT / ".pytest_cache" / "full-export.txt"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_text(out)
    want = {name: version for name, (version, _) in exported_pins(tmp).items()}
    have = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    have.pop(PROJECT)
    assert {n: v for n, v in have.items() if want.get(n) != v} == {}, "installed but not as the lock pins"
    assert {n: v for n, v in want.items() if n not in have} == {}, "locked but not installed"
    # ... and uv itself agrees that nothing is missing, extra or different (no resolution: --frozen).
    check = subprocess.run(
        [str(uv), "sync", "--frozen", "--extra", "dev", "--check"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert check.returncode == 0, check.stderr
