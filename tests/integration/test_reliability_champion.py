"""Champion safety: two pipeline runs registering at once against a real MLflow server.

Each round starts with the worst model C as ``@champion``; then two processes (two
"pipeline runs", a schedule overlapping a manual run) register the best model A and the
middle model B at the same moment, or one slightly after the other. Whatever the timing,
the alias must end on A, never on B, and the registry lock must be gone afterwards.

The workers reach MLflow through a proxy that holds every alias write back for a second,
as a slow network or a busy server would: without the lock, a writer that decided on a
stale read then lands its write after the better model's.
"""

from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest

from components.core.registry import champion_lock, selection
from tests.support import reliability_support as support
from tests.support.faults import FaultProxy, always

# (delay of A, delay of B) in seconds: together, A first, B first, B well after A.
ROUNDS = [(0.0, 0.0), (0.0, 0.4), (0.4, 0.0), (0.0, 0.8), (0.0, 0.2)]


@pytest.fixture(scope="module")
def slow_alias_writes(mlflow_server):
    with FaultProxy(
        mlflow_server, always("slow", path_contains="/registered-models/alias", methods=["POST"]), slow_seconds=1.0
    ) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def pool(slow_alias_writes):
    with ProcessPoolExecutor(
        2,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=support.worker_init,
        initargs=(slow_alias_writes.url,),
    ) as executor:
        pids = {f.result() for f in [executor.submit(support.worker_warm, 3.0) for _ in range(2)]}
        assert len(pids) == 2, "the two workers must be separate processes"
        yield executor


def test_quality_order_is_total_and_deterministic():
    nan = float("nan")
    a = {"val": {"accuracy": 0.8, "auc": 0.9}}
    b = {"val": {"accuracy": 0.8, "auc": nan}}
    assert selection.quality_key(a, "3") > selection.quality_key(b, "9")  # NaN AUC ranks lowest
    assert selection.quality_key(a, "4") > selection.quality_key(a, "3")  # ties: newer version
    assert selection.quality_key({"val": {"accuracy": 0.9, "auc": 0.1}}, "1") > selection.quality_key(a, "9")


def test_a_held_lock_makes_a_writer_wait_then_fail_clearly(mlflow_server):
    from mlflow import MlflowClient

    from components.core.registry import tracking

    tracking.setup(mlflow_server, "lock-test")
    client = MlflowClient(mlflow_server)
    name = f"locked-{uuid.uuid4().hex[:6]}"
    with champion_lock.champion_lock(client, name, ttl=60):
        with pytest.raises(champion_lock.RegistryError, match=r"another pipeline run .* gave up waiting"):
            with champion_lock.champion_lock(client, name, ttl=60, wait=1.0, poll=0.1):
                pass
    # Released: the next writer gets it at once; an expired lock is broken.
    with champion_lock.champion_lock(client, name, ttl=0.01):
        pass
    client.create_registered_model(f"{name}{champion_lock.LOCK_SUFFIX}", tags={"owner": "crashed", "expires": "0"})
    with champion_lock.champion_lock(client, name, ttl=60, wait=5.0, poll=0.1) as still_held:
        still_held()
    assert not client.search_registered_models(f"name = '{name}{champion_lock.LOCK_SUFFIX}'")
