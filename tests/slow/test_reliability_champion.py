"""Slow tier of integration/test_reliability_champion.py: Champion safety: two pipeline runs registering at once against a real MLflow server."""

from __future__ import annotations

import uuid

import pytest

from components.core.registry import champion_lock, versions
from tests.integration.test_reliability_champion import ROUNDS, pool, slow_alias_writes  # noqa: F401 (fixtures are found by name)
from tests.support import reliability_support as support


@pytest.mark.slow
def test_concurrent_registrations_never_leave_the_alias_on_the_worse_model(
    pool, slow_alias_writes, mlflow_server, tmp_path
):
    from mlflow import MlflowClient

    probe = support.write_probe_splits(tmp_path)
    winners = pool.submit(support.worker_log_probe_models, "champion-race").result()
    client = MlflowClient(mlflow_server)
    outcomes = []
    for r, (delay_a, delay_b) in enumerate(ROUNDS):
        name = f"race-{uuid.uuid4().hex[:6]}-{r}"
        seeded = pool.submit(support.worker_register, winners["C"], name, probe["val"], probe["test"]).result()
        assert seeded["alias"] == versions.CHAMPION
        fut_a = pool.submit(support.worker_register, winners["A"], name, probe["val"], probe["test"], delay_a)
        fut_b = pool.submit(support.worker_register, winners["B"], name, probe["val"], probe["test"], delay_b)
        a, b = fut_a.result(timeout=300), fut_b.result(timeout=300)
        assert a["pid"] != b["pid"]
        overlap = min(a["finished"], b["finished"]) > max(a["started"], b["started"])
        champion = client.get_model_version_by_alias(name, versions.CHAMPION).version
        outcomes.append((r, delay_a, delay_b, overlap, a["alias"], b["alias"], champion == a["version"]))
        assert champion == a["version"], f"round {r}: champion is v{champion}, not A (v{a['version']}): {outcomes}"
        names = {m.name for m in client.search_registered_models(f"name = '{name}{champion_lock.LOCK_SUFFIX}'")}
        assert not names, f"round {r}: the registry lock was left behind"
        # Exactly one version per run, three in all.
        assert len(client.search_model_versions(f"name='{name}'")) == 3
    assert sum(o[3] for o in outcomes) >= 3, f"the registrations hardly overlapped: {outcomes}"
    assert "slow" in slow_alias_writes.faults()
