"""The model registry's writes: register the run's winner once, score it and the current
``@champion`` the same way, and move the aliases (never stages) under the champion lock.

Which model wins and whether it replaces the champion is decided by the pure policy in
selection.py; the lock is champion_lock.py; the words of the decision are promotion_report.py.
Both models are scored the same way (loaded from the registry, on this run's validation data)
and ordered by a total key, so every writer agrees on which is better.

Idempotency: a retried task finds the version it registered before (same MLflow run);
a registration whose response was lost and was sent again by the HTTP retry leaves two
versions of one run, and the newer one is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from components.core import settings
from components.core.data.dataset import SplitArrays
from components.core.evaluation.metrics import classification_metrics
from components.core.registry import approval
from components.core.registry.champion_lock import RegistryError, champion_lock
from components.core.registry.selection import CHALLENGER, CHAMPION, compare_on_unseen, promotes
from components.core.step_results import TrainSummary

log = logging.getLogger(__name__)


@dataclass
class Registration:
    name: str
    version: str
    model_uri: str
    alias: str
    champion_changed: bool
    champion_version: str
    previous_champion: dict | None
    proposed: bool = False  # it would have become champion; it waits for a person (approval.py)


def evaluate_model_uri(model_uri: str, val: SplitArrays, test: SplitArrays) -> dict:
    """Score a registered model on this run's validation and test data at its own threshold."""
    import mlflow

    from components.core.inference.predictor import decision_settings
    from components.core.modeling.training import predict_proba

    threshold, _ = decision_settings(mlflow.models.get_model_info(model_uri).metadata, model_uri)
    model = mlflow.tensorflow.load_model(model_uri)
    val_scores = predict_proba(model, val)
    return {
        "threshold": threshold,
        "val": classification_metrics(val.labels, val_scores, threshold),
        "test": classification_metrics(test.labels, predict_proba(model, test), threshold),
        "val_scores": val_scores,  # for the comparison on a subset; not reported
    }


def trained_on(version) -> set[str] | None:
    """The content hashes ``version`` trained on, or None when its run did not record them."""
    import json

    import mlflow

    from components.core.registry import tracking

    try:
        path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=tracking.TRAINED_ON_ARTIFACT)
    except Exception:  # an older or hand-registered version: its training set is unknown
        return None
    with open(path) as fh:
        return set(json.load(fh)["sha1"])


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


def register_once(client, winner: TrainSummary, name: str, tags: dict[str, str]):
    """The one version for ``winner``'s run: reuse it if a retried task registered it before;
    if an HTTP retry of the create call made a second one, delete the newer."""
    import mlflow

    version = find_version_for_run(client, name, winner.run_id)
    if version is not None:
        log.info("run %s is already registered as %s version %s; reusing it", winner.run_id, name, version.version)
        return version
    mlflow.register_model(winner.model_uri, name, tags=tags)
    versions = versions_for_run(client, name, winner.run_id)
    if not versions:
        raise RegistryError(
            f"registered {winner.model_uri} as {name}, but no version from run "
            f"{winner.run_id} is listed; check the MLflow server"
        )
    for extra in versions[1:]:
        log.warning(
            "%s version %s duplicates version %s (a retried registration); deleting it",
            name,
            extra.version,
            versions[0].version,
        )
        client.delete_model_version(name, extra.version)
    return versions[0]


def register_winner(
    winner: TrainSummary,
    name: str,
    val: SplitArrays,
    test: SplitArrays,
    tags: dict[str, str],
    require_approval: bool = False,
) -> Registration:
    """Register ``winner`` as a new version (once); it becomes ``@champion`` only if it is at
    least as good on this run's validation data as the current champion, else ``@challenger``.
    With ``require_approval`` it never becomes champion here: one that would have is
    ``@challenger`` with ``proposed`` set, for a person to approve (approval.py); the caller
    records the evidence. A promotion without approval is recorded in the history too, and the
    champion it replaced becomes ``@previous`` (what a rollback restores).

    Both are scored by :func:`evaluate_model_uri` (loaded from the registry, on ``val``), so
    like is compared with like; the comparison and the alias move happen under
    :func:`champion_lock.champion_lock`, so concurrent runs never leave the alias on the worse model."""
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
            previous = {
                "version": champion.version,
                "val": theirs["val"],
                "test": theirs["test"],
                "threshold": theirs["threshold"],
                "comparison": comparison,
            }
            promote = promotes(comparison, version.version, champion.version)
            log.info(
                "champion v%s vs newcomer v%s on %d of %d validation images unseen by the champion -> %s",
                champion.version,
                version.version,
                comparison["compared_on"],
                len(val),
                "promote" if promote else f"challenger ({comparison.get('reason', 'not better')})",
            )
        replaces = champion is None or str(champion.version) != str(version.version)
        proposed = promote and require_approval and replaces
        promote = promote and not proposed
        alias = CHAMPION if promote else CHALLENGER
        still_held()
        if promote and replaces:
            client.set_model_version_tag(name, version.version, approval.STATUS, approval.NOT_REQUIRED)
            if champion is not None:
                client.set_registered_model_alias(name, approval.PREVIOUS, champion.version)
        client.set_registered_model_alias(name, alias, version.version)
        if promote and replaces:
            approval.record(
                client,
                name,
                "promoted",
                version.version,
                f"pipeline run {settings.run_id() or 'unknown'}",
                "beat the champion on images unseen by both; the pipeline runs without require_approval",
                from_version=None if champion is None else str(champion.version),
            )
        if promote:
            approval.drop_challenger(client, name, str(version.version))
        champion_now = current_champion(client, name)
    return Registration(
        name=name,
        version=str(version.version),
        model_uri=f"models:/{name}/{version.version}",
        alias=alias,
        champion_changed=promote and replaces,
        champion_version=str(champion_now.version) if champion_now is not None else "",
        previous_champion=previous,
        proposed=proposed,
    )
