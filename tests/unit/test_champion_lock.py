"""The champion lock against the registry's answers, with a stand-in client (the real server's race
runs in tests/slow/test_reliability_champion.py)."""

from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from components.core.registry.champion_lock import LOCK_SUFFIX, champion_lock


class Registry:
    """create/get/delete of registered models by name; ``create_answers`` are error codes the
    next creates raise (as the server answered them) before creates work again."""

    def __init__(self, create_answers=()):
        self.models, self.create_answers, self.creates = {}, list(create_answers), 0

    def create_registered_model(self, name, tags=None, description=None):
        self.creates += 1
        if self.create_answers:
            raise MlflowException("from the server", error_code=getattr(databricks_pb2, self.create_answers.pop(0)))
        if name in self.models:
            raise MlflowException("exists", error_code=databricks_pb2.RESOURCE_ALREADY_EXISTS)
        self.models[name] = SimpleNamespace(tags=dict(tags or {}))

    def get_registered_model(self, name):
        if name not in self.models:
            raise MlflowException("not found", error_code=databricks_pb2.RESOURCE_DOES_NOT_EXIST)
        return self.models[name]

    def delete_registered_model(self, name):
        self.models.pop(name)


def test_a_create_that_races_the_holders_release_is_retried():
    """MLflow's SQL store answers a create whose name was taken, then released before it looked
    the holder up, with "does not exist": the lock is free, so the writer tries again and gets it."""
    registry = Registry(["RESOURCE_DOES_NOT_EXIST"])
    with champion_lock(registry, "m", ttl=60, wait=5) as still_held:
        still_held()
        assert f"m{LOCK_SUFFIX}" in registry.models
    assert registry.creates == 2 and registry.models == {}


def test_any_other_refusal_of_the_create_is_raised():
    registry = Registry(["PERMISSION_DENIED"])
    with pytest.raises(MlflowException, match="from the server"):
        with champion_lock(registry, "m", ttl=60, wait=5):
            pass
    assert registry.models == {}
