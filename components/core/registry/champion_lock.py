"""The champion lock: one writer at a time reads, compares and moves ``@champion``.

MLflow has no transactions, so two pipeline runs finishing at once (a schedule overlapping a
manual run) could both read the old champion, both decide to promote, and leave the alias on
whichever wrote last, the worse model perhaps. The read-compare-set runs under a per-model lock:
a registered model named ``<name>.champion-lock`` that only one writer can create (the
registry's unique name is the atomic step). The lock carries its owner and an expiry, so a
crashed holder blocks others for ``SKIN_CANCER_REGISTRY_LOCK_TTL`` seconds (default 900) at most;
a waiter gives up after ``SKIN_CANCER_REGISTRY_LOCK_WAIT`` seconds (default 1800) with a clear error.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from contextlib import contextmanager

from components.core import settings

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".champion-lock"


class RegistryError(RuntimeError):
    """The registry could not be updated safely; the message says why and what to do."""


@contextmanager
def champion_lock(client, name: str, ttl: float | None = None, wait: float | None = None, poll: float = 0.5):
    """Hold ``<name>.champion-lock`` while the champion is read, compared and moved.

    Creating a registered model is atomic in the registry (names are unique), so exactly
    one writer holds the lock. Yields a callable that raises if the lock was lost (expired
    and taken by another writer) so the caller can check right before it writes."""
    from mlflow.exceptions import MlflowException

    ttl = ttl if ttl is not None else settings.env_number("SKIN_CANCER_REGISTRY_LOCK_TTL", float)
    wait = wait if wait is not None else settings.env_number("SKIN_CANCER_REGISTRY_LOCK_WAIT", float)
    lock = f"{name}{LOCK_SUFFIX}"
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + wait
    while True:
        expires = time.time() + ttl
        try:
            client.create_registered_model(
                lock,
                tags={"owner": token, "expires": f"{expires:.3f}"},
                description=f"Lock for the @champion alias of {name}; held while a pipeline run compares "
                "and promotes. Deleted when done; expires by itself. Not a model.",
            )
            break
        except MlflowException as err:
            # "Does not exist" from a create: the name was taken when we inserted, and released
            # before the server looked the holder up to say so (MLflow's SQL store reads the
            # existing model after the unique-name violation). The lock is free again: retry.
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                continue
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = _lock_holder(client, lock)
        if holder is None:
            continue  # released between our create and this read
        if holder[0] == token:
            break  # our create went through; its response was lost and the retry saw it
        if time.time() > holder[1]:
            log.warning(
                "registry lock %s held by %s expired %.0f s ago; breaking it", lock, holder[0], time.time() - holder[1]
            )
            _delete_lock_if(client, lock, holder[0])
            continue
        if time.monotonic() > deadline:
            raise RegistryError(
                f"{lock}: another pipeline run ({holder[0]}) has been promoting a model for over {wait:.0f} s; "
                f"gave up waiting. It expires at {time.strftime('%H:%M:%S', time.localtime(holder[1]))}; "
                "rerun the task then, or delete that registered model if its run is gone"
            )
        log.info("registry lock %s held by %s; waiting", lock, holder[0])
        time.sleep(poll * (0.5 + random.random()))

    def check() -> None:
        holder = _lock_holder(client, lock)
        if holder is None or holder[0] != token:
            raise RegistryError(
                f"{lock}: lost the registry lock (held over {ttl:.0f} s and taken over); "
                "the champion was not changed: rerun the task"
            )

    try:
        yield check
    finally:
        _delete_lock_if(client, lock, token)


def _lock_holder(client, lock: str) -> tuple[str, float] | None:
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(lock)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return model.tags.get("owner", ""), float(model.tags.get("expires", "0") or 0)


def _delete_lock_if(client, lock: str, owner: str) -> None:
    """Delete the lock if ``owner`` still holds it (read just before the delete)."""
    from mlflow.exceptions import MlflowException

    holder = _lock_holder(client, lock)
    if holder is not None and holder[0] == owner:
        try:
            client.delete_registered_model(lock)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
