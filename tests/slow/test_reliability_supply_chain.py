"""Slow tier of unit/test_reliability_supply_chain.py: Supply chain: no pickle on any load path, bounded dependencies, non-root images, and a"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.unit.test_reliability_supply_chain import LOCK, ROOT, _ignored, _unaudited, audit_verdict  # noqa: F401 (fixtures are found by name)


@pytest.mark.slow
def test_pip_audit_of_the_pinned_set():
    pytest.importorskip("pip_audit", reason="pip-audit is in the dev extra: bash scripts/install.sh")
    ignored = _ignored()
    if LOCK.is_file():
        # exactly what the images install; its hashes make pip-audit check every file too
        target = ["-r", str(LOCK), "--require-hashes", "--disable-pip"]
    else:
        target = []  # the installed environment
    cmd = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off", "-f", "json", "--timeout", "30", *target]
    for vid in ignored:
        cmd += ["--ignore-vuln", vid]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=ROOT)
    except subprocess.TimeoutExpired:
        _unaudited("pip-audit timed out reaching the vulnerability service; this run audited nothing")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        if re.search(r"(?i)connection|timed out|resolve|network|unreachable|HTTPError", proc.stderr or ""):
            _unaudited(f"pip-audit could not reach the vulnerability service: {' | '.join(tail)}")
        pytest.fail(f"pip-audit failed (exit {proc.returncode}): {' | '.join(tail)}")
    verdict, why = audit_verdict(report, ignored)
    print(f"pip-audit: {verdict}: {why}")
    if verdict == "skip":
        _unaudited(why)
    assert verdict == "pass", why
