"""The model registry: pick the run's best model on VALIDATION data, compare it with the
current ``@champion`` and move aliases (never stages)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from components.core.dataset import SplitArrays
from components.core.metrics import classification_metrics

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_MODEL_NAME = "skin-cancer-classifier"


def rank_key(result: dict) -> tuple:
    """Highest validation accuracy; ties: higher validation AUC, then the smaller model."""
    return (result["val"]["accuracy"], result["val"]["auc"], -result["params"])


def select_winner(results: list[dict]) -> dict:
    if not results:
        raise ValueError("no trained models to select from")
    return max(results, key=rank_key)


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

    from components.core.training import predict_proba

    info = mlflow.models.get_model_info(model_uri)
    threshold = float((info.metadata or {}).get("threshold", 0.5))
    model = mlflow.tensorflow.load_model(model_uri)
    return {
        "threshold": threshold,
        "val": classification_metrics(val.labels, predict_proba(model, val), threshold),
        "test": classification_metrics(test.labels, predict_proba(model, test), threshold),
    }


def current_champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def find_version_for_run(client, name: str, run_id: str):
    """An existing version from ``run_id``: a retried task reuses it instead of registering twice."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return None
    return versions[0] if versions else None


def register_winner(
    winner: dict,
    name: str,
    val: SplitArrays,
    test: SplitArrays,
    tags: dict[str, str],
) -> Registration:
    """Register ``winner`` as a new version; it becomes ``@champion`` only if it is at least as
    good on this run's validation data as the current champion, else ``@challenger``."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass  # already exists
    champion = current_champion(client, name)
    previous = None
    promote = True
    if champion is not None and champion.run_id != winner["run_id"]:
        scored = evaluate_model_uri(f"models:/{name}@{CHAMPION}", val, test)
        previous = {"version": champion.version, **scored}
        promote = (winner["val"]["accuracy"], winner["val"]["auc"]) >= (
            scored["val"]["accuracy"],
            scored["val"]["auc"],
        )
        log.info(
            "current champion v%s: val accuracy %.4f; newcomer %.4f -> %s",
            champion.version, scored["val"]["accuracy"], winner["val"]["accuracy"],
            "promote" if promote else "challenger",
        )
    version = find_version_for_run(client, name, winner["run_id"])
    if version is None:
        version = mlflow.register_model(winner["model_uri"], name, tags=tags)
    alias = CHAMPION if promote else CHALLENGER
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


def summary_markdown(results: list[dict], winner: dict, reg: Registration) -> str:
    rows = [
        "| model | val acc | val AUC | test acc | test AUC | sensitivity | specificity | params | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=rank_key, reverse=True):
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
        f"{' (changed)' if reg.champion_changed else ' (unchanged)'}.",
        "",
        "Selection uses validation data only; test figures are reported, never used to choose.",
    ]
    return "\n".join(rows)

