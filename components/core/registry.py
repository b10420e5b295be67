"""The model registry: pick the run's best model on VALIDATION data, compare it with the
current ``@champion`` and move aliases (never stages).

Champion safety. MLflow has no transactions, so two pipeline runs finishing at once (a
schedule overlapping a manual run) could both read the old champion, both decide to
promote, and leave the alias on whichever wrote last, the worse model perhaps. Here the
read-compare-set of ``@champion`` runs under a per-model lock: a registered model named
``<name>.champion-lock`` that only one writer can create (the registry's unique name is
the atomic step). The lock carries its owner and an expiry, so a crashed holder blocks
others for ``SKIN_CANCER_REGISTRY_LOCK_TTL`` seconds (default 900) at most; a waiter gives
up after ``SKIN_CANCER_REGISTRY_LOCK_WAIT`` seconds (default 1800) with a clear error.
Both models are scored the same way (loaded from the registry, on this run's validation
data) and ordered by a total key: validation accuracy, then validation AUC, then the
version number (newer wins a tie), so every writer agrees on which is better.

Idempotency: a retried task finds the version it registered before (same MLflow run);
a registration whose response was lost and was sent again by the HTTP retry leaves two
versions of one run, and the newer one is deleted.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from components.core import settings
from components.core.dataset import SplitArrays
from components.core.metrics import classification_metrics

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
LOCK_SUFFIX = ".champion-lock"


# The one promotion rule, said the same way here, in the run summary and in the README.
PROMOTION_RULE = ("The new model becomes @champion when it is at least as good as the current champion on this "
                  "run's validation data: higher accuracy, or equal accuracy and higher AUC; on an exact tie the "
                  "newer model (trained on the newer data) wins. Otherwise it is registered as @challenger.")


class RegistryError(RuntimeError):
    """The registry could not be updated safely; the message says why and what to do."""


def auc_or_lowest(auc: float | None) -> float:
    """An AUC to rank by: an undefined one (NaN: one class in validation) ranks below every real one.
    NaN compares false with everything, so left as it is it would make the order depend on the input's."""
    return -1.0 if auc is None or math.isnan(auc) else float(auc)


def rank_key(result: dict) -> tuple:
    """Sorts this run's models best first: highest validation accuracy; ties: higher validation
    AUC (NaN last), then the smaller model, then name and run id (so equal models still have one
    order, whatever order the results arrive in)."""
    val = result["val"]
    return (-val["accuracy"], -auc_or_lowest(val["auc"]), result["params"], result["name"], result.get("run_id", ""))


def select_winner(results: list[dict]) -> dict:
    if not results:
        raise ValueError("no trained models to select from")
    return min(results, key=rank_key)


@dataclass
class Registration:
    name: str
    version: str
    model_uri: str
    alias: str
    champion_changed: bool
    champion_version: str
    previous_champion: dict | None


def evaluate_model_uri(model_uri: str, val: SplitArrays, test: SplitArrays) -> dict:
    """Score a registered model on this run's validation and test data at its own threshold."""
    import mlflow

    from components.core.predictor import decision_settings
    from components.core.training import predict_proba

    threshold, _ = decision_settings(mlflow.models.get_model_info(model_uri).metadata, model_uri)
    model = mlflow.tensorflow.load_model(model_uri)
    val_scores = predict_proba(model, val)
    return {
        "threshold": threshold,
        "val": classification_metrics(val.labels, val_scores, threshold),
        "test": classification_metrics(test.labels, predict_proba(model, test), threshold),
        "val_scores": val_scores,  # for the comparison on a subset; not reported
    }


# Fewer unseen validation images than this (or one class missing) cannot decide between two
# models: the standard error of an accuracy is then at least sqrt(0.25 / 10) ~ 0.16 at p = 0.5,
# larger than the differences worth acting on. The champion then stays, and the summary says why.
MIN_UNSEEN_IMAGES = 10


def trained_on(version) -> set[str] | None:
    """The content hashes ``version`` trained on, or None when its run did not record them."""
    import json

    import mlflow

    from components.core import tracking

    try:
        path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=tracking.TRAINED_ON_ARTIFACT)
    except Exception:  # an older or hand-registered version: its training set is unknown
        return None
    with open(path) as fh:
        return set(json.load(fh)["sha1"])


def unseen_indices(val: SplitArrays, seen: set[str] | None) -> np.ndarray:
    """Positions of the validation images whose content is not in ``seen`` (all when unknown)."""
    sources = val.manifest.get("sources") or []
    if seen is None or len(sources) != len(val):
        return np.arange(len(val))
    return np.array([i for i, src in enumerate(sources) if src["sha1"] not in seen], dtype=int)


def compare_on_unseen(mine: dict, theirs: dict, val: SplitArrays, seen: set[str] | None) -> dict:
    """Both models scored on the validation images the champion never trained on (the newcomer
    trained on none of this run's validation images). Returns their val metrics on that set,
    its size, and ``decided`` False with the reason when it is too small to decide."""
    idx = unseen_indices(val, seen)
    labels = val.labels[idx]
    both_classes = len(set(labels.tolist())) == 2
    out = {"compared_on": int(idx.size), "validation_images": len(val),
           "champion_training_set": "unknown" if seen is None else "recorded"}
    if idx.size < MIN_UNSEEN_IMAGES or not both_classes:
        out.update(decided=False, reason=(
            f"only {idx.size} of {len(val)} validation images are unseen by the champion"
            f"{'' if both_classes else ' and they lack a class'}; at least "
            f"{MIN_UNSEEN_IMAGES} of both classes are needed to decide, so the champion stays"))
        return out
    for who, scored in (("mine", mine), ("theirs", theirs)):
        out[who] = classification_metrics(labels, scored["val_scores"][idx], scored["threshold"])
    out["decided"] = True
    return out


def quality_key(scored: dict, version) -> tuple:
    """Total order on registered models: val accuracy, then val AUC (NaN lowest), then version."""
    return (scored["val"]["accuracy"], auc_or_lowest(scored["val"]["auc"]), int(version))


def current_champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def find_version_for_run(client, name: str, run_id: str):
    """An existing version from ``run_id``: a retried task reuses it instead of registering twice."""

    versions = versions_for_run(client, name, run_id)
    return versions[0] if versions else None


def versions_for_run(client, name: str, run_id: str) -> list:
    """Every version of ``name`` registered from ``run_id``, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return []
    return sorted(versions, key=lambda v: int(v.version))


def register_once(client, winner: dict, name: str, tags: dict[str, str]):
    """The one version for ``winner``'s run: reuse it if a retried task registered it before;
    if an HTTP retry of the create call made a second one, delete the newer."""
    import mlflow

    version = find_version_for_run(client, name, winner["run_id"])
    if version is not None:
        log.info("run %s is already registered as %s version %s; reusing it", winner["run_id"], name, version.version)
        return version
    mlflow.register_model(winner["model_uri"], name, tags=tags)
    versions = versions_for_run(client, name, winner["run_id"])
    if not versions:
        raise RegistryError(f"registered {winner['model_uri']} as {name}, but no version from run "
                            f"{winner['run_id']} is listed; check the MLflow server")
    for extra in versions[1:]:
        log.warning("%s version %s duplicates version %s (a retried registration); deleting it",
                    name, extra.version, versions[0].version)
        client.delete_model_version(name, extra.version)
    return versions[0]


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
                lock, tags={"owner": token, "expires": f"{expires:.3f}"},
                description=f"Lock for the @champion alias of {name}; held while a pipeline run compares "
                            "and promotes. Deleted when done; expires by itself. Not a model.",
            )
            break
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = _lock_holder(client, lock)
        if holder is None:
            continue  # released between our create and this read
        if holder[0] == token:
            break  # our create went through; its response was lost and the retry saw it
        if time.time() > holder[1]:
            log.warning("registry lock %s held by %s expired %.0f s ago; breaking it", lock, holder[0],
                        time.time() - holder[1])
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
            raise RegistryError(f"{lock}: lost the registry lock (held over {ttl:.0f} s and taken over); "
                                "the champion was not changed: rerun the task")

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


def register_winner(
    winner: dict,
    name: str,
    val: SplitArrays,
    test: SplitArrays,
    tags: dict[str, str],
) -> Registration:
    """Register ``winner`` as a new version (once); it becomes ``@champion`` only if it is at
    least as good on this run's validation data as the current champion, else ``@challenger``.

    Both are scored by :func:`evaluate_model_uri` (loaded from the registry, on ``val``), so
    like is compared with like; the comparison and the alias move happen under
    :func:`champion_lock`, so concurrent runs never leave the alias on the worse model."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = register_once(client, winner, name, tags)
    scores: dict[str, dict] = {}

    def score(v) -> dict:
        # Loaded from the registry and scored only when there is a champion to compare with:
        # a first registration skips the (minutes-long, at 224 px on a CPU) evaluation.
        if str(v) not in scores:
            scores[str(v)] = evaluate_model_uri(f"models:/{name}/{v}", val, test)
        return scores[str(v)]

    # Score the champion seen now outside the lock (loading a model is the slow part); under
    # the lock it is re-read and scored again only if it changed meanwhile.
    seen = current_champion(client, name)
    if seen is not None and str(seen.version) != str(version.version):
        score(version.version)
        score(seen.version)
    with champion_lock(client, name) as still_held:
        champion = current_champion(client, name)
        previous = None
        promote = True
        if champion is not None and str(champion.version) != str(version.version):
            mine = score(version.version)
            theirs = score(champion.version)
            comparison = compare_on_unseen(mine, theirs, val, trained_on(champion))
            previous = {"version": champion.version, "val": theirs["val"], "test": theirs["test"],
                        "threshold": theirs["threshold"], "comparison": comparison}
            promote = comparison["decided"] and (
                quality_key({"val": comparison["mine"]}, version.version)
                > quality_key({"val": comparison["theirs"]}, champion.version))
            log.info("champion v%s vs newcomer v%s on %d of %d validation images unseen by the champion -> %s",
                     champion.version, version.version, comparison["compared_on"], len(val),
                     "promote" if promote else f"challenger ({comparison.get('reason', 'not better')})")
        alias = CHAMPION if promote else CHALLENGER
        still_held()
        client.set_registered_model_alias(name, alias, version.version)
        if promote:
            # The old challenger pointer would name a model older than the champion: drop it.
            try:
                if client.get_model_version_by_alias(name, CHALLENGER).version == version.version:
                    client.delete_registered_model_alias(name, CHALLENGER)
            except mlflow.exceptions.MlflowException:
                pass
        champion_now = client.get_model_version_by_alias(name, CHAMPION)
    return Registration(
        name=name,
        version=str(version.version),
        model_uri=f"models:/{name}/{version.version}",
        alias=alias,
        champion_changed=promote and (champion is None or champion.version != version.version),
        champion_version=str(champion_now.version),
        previous_champion=previous,
    )


def comparison_lines(previous: dict | None) -> list[str]:
    """How the newcomer was compared with the champion, for the run summary."""
    if not previous:
        return []  # nothing was compared; decision() says there was no champion
    c = previous["comparison"]
    where = (f"on the {c['compared_on']} of {c['validation_images']} validation images it never trained on"
             if c["champion_training_set"] == "recorded" else
             f"on all {c['validation_images']} validation images (its training set was not recorded)")
    if not c["decided"]:
        return ["", f"Champion version {previous['version']} compared {where}: {c['reason']}."]
    return ["", f"Champion version {previous['version']} compared {where}: accuracy "
                f"{c['theirs']['accuracy']:.3f} (champion) vs {c['mine']['accuracy']:.3f} (new), AUC "
                f"{c['theirs']['auc']:.3f} vs {c['mine']['auc']:.3f}."]


def decision(reg: Registration) -> str:
    """One sentence: why the new version became @champion, or why the champion stayed."""
    previous = reg.previous_champion
    if reg.alias == CHAMPION and not previous:
        return (f"Version {reg.version} is @champion: there was no champion before it"
                if reg.champion_changed else f"Version {reg.version} was already @champion (a rerun)")
    if reg.champion_changed:
        return (f"Version {reg.version} became @champion: it is at least as good as champion version "
                f"{previous['version']} on the validation images the champion never trained on")
    comparison = (previous or {}).get("comparison", {})
    why = comparison.get("reason") if not comparison.get("decided", True) else (
        "the champion is better on the validation images it never trained on")
    return f"Champion version {reg.champion_version} stayed and version {reg.version} is @{reg.alias}: {why}"


def summary_markdown(results: list[dict], winner: dict, reg: Registration) -> str:
    rows = [
        "| model | val acc | val AUC | test acc | test AUC | sensitivity | specificity | params | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=rank_key):
        mark = " (winner)" if r is winner else ""
        rows.append(
            f"| {r['name']}{mark} | {r['val']['accuracy']:.3f} | {r['val']['auc']:.3f} | "
            f"{r['test']['accuracy']:.3f} | {r['test']['auc']:.3f} | {r['test']['sensitivity']:.3f} | "
            f"{r['test']['specificity']:.3f} | {r['params']:,} | {r['seconds']:.0f} |"
        )
    rows += [
        "",
        f"Registered **{reg.name}** version **{reg.version}** as `@{reg.alias}`; "
        f"champion is version {reg.champion_version}"
        f"{' (changed)' if reg.champion_changed else ' (unchanged)'}. {decision(reg)}.",
        "",
        "Selection uses validation data only; test figures are reported, never used to choose.",
        PROMOTION_RULE,
        *comparison_lines(reg.previous_champion),
    ]
    return "\n".join(rows)

