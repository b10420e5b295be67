"""The selection step: the winner on validation, registered, compared with the champion, and
what people look at (summary, model card, dashboard).

Called by ``components/select_register.py`` (see this package's docstring).
"""


def run_select_and_register(
    results: list,
    val_path: str,
    test_path: str,
    mlflow_tracking_uri: str,
    experiment_name: str,
    registered_model_name: str,
    data_fingerprint: str,
    summary_path: str | None = None,
    dashboard_path: str | None = None,
    card_path: str | None = None,
    runtime_image: str = "",
    require_approval: bool = False,
    submitted_by: str = "",
    kfp_run_name: str = "",
    ensemble_path: str | None = None,
    ensemble_uri: str = "",
):
    """Select on validation, register, compare with @champion; then what people look at: the
    Markdown summary, the model card (MLflow, KFP output, beside the Model artifact) and the
    dashboard's HTML page with every model's curves. ``runtime_image``: the image this step runs
    in, recorded with the training image the winner's run recorded (lineage.with_runtime_image).

    ``require_approval``: a winner that would become champion is proposed instead (``@challenger``,
    ``approval.status = pending``, its evidence in MLflow: registry/evidence.py) and the summary
    says what a person runs next; ``submitted_by`` and ``kfp_run_name`` go into that evidence.

    The candidates are the trained models and the average of the best k of them (steps/ensemble.py),
    built only when it beats every one on validation; ``ensemble_path``/``ensemble_uri``: where its
    Model artifact goes (what a deployment serves)."""
    import logging
    from collections import namedtuple

    from components.core import settings
    from components.core.data.dataset import open_splits
    from components.core.registry import lineage, selection, tracking, versions
    from components.core.reporting import model_card, promotion_report
    from components.core.step_results import ModelResult, RegisteredVersion, SelectionSummary, TrainSummary

    logging.basicConfig(level=logging.INFO)
    experiment_id = tracking.setup(mlflow_tracking_uri, experiment_name)
    parsed = [TrainSummary.from_json(r) for r in results]
    val, test = open_splits(val_path, test_path)
    from components.core.steps import ensemble

    # Each model's stored scores, read once: the ensemble candidate and the comparison figures use them.
    stored = {r.run_id: tracking.load_scores(r.run_id) for r in parsed}
    candidate = ensemble.consider(parsed, stored, val, test, experiment_id, ensemble_path, ensemble_uri)
    if candidate is not None:
        parsed.append(candidate)
    elif ensemble_path:  # the output exists either way: KFP uploads what the path holds
        import os

        os.makedirs(ensemble_path, exist_ok=True)
        with open(os.path.join(ensemble_path, "NO_ENSEMBLE.txt"), "w") as fh:
            fh.write("No average of this run's models beat the best single model on validation.\n")
    winner = selection.select_winner(parsed)
    winner.lineage = lineage.with_runtime_image(winner.lineage, runtime_image)
    tags = {
        "pipeline_run": settings.run_id(),
        "data_fingerprint": data_fingerprint,
        "family": winner.family,
        "model_name": winner.name,
        "val_accuracy": f"{winner.val['accuracy']:.4f}",
        "val_auc": f"{winner.val['auc']:.4f}",
        "test_accuracy": f"{winner.test['accuracy']:.4f}",
        "threshold": f"{winner.threshold:.4f}",
        **lineage.version_tags(winner.lineage),
        "model_card": f"runs:/{winner.run_id}/{model_card.CARD_FILE}",
        # What a deployment of this version serves (pipelines/deploy_pipeline.py reads it back).
        "model_artifact": winner.artifact_uri,
        "approval.required": str(bool(require_approval)).lower(),
    }
    reg = versions.register_winner(winner, registered_model_name, val, test, tags, require_approval)
    pending = None
    if reg.proposed:
        pending = propose(winner, reg, data_fingerprint, submitted_by, kfp_run_name, mlflow_tracking_uri)
    markdown = promotion_report.summary_markdown(parsed, winner, reg)
    if pending:
        markdown += "\n\n" + pending["next"]
    card, page, problem = selection_report(parsed, winner, reg, val, test, stored)
    if problem:
        markdown += (
            f"\n\nThe model card is in MLflow but not beside the Model artifact ({problem}); "
            "a server started from that folder has no /model-card."
        )
    for path, text in ((summary_path, markdown), (card_path, card), (dashboard_path, page)):
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    print(markdown)
    summary = SelectionSummary(
        models=[ModelResult.of(r) for r in parsed],
        winner=winner.name,
        registered_model=RegisteredVersion(
            reg.name, reg.version, reg.alias, reg.model_uri, reg.champion_version, reg.champion_changed
        ),
        previous_champion=reg.previous_champion,
        data_fingerprint=data_fingerprint,
        approval=pending,
    )
    out = namedtuple(
        "Registration",
        ["model_name", "model_version", "model_uri", "champion_changed", "summary_json", "model_artifact_uri"],
    )
    return out(reg.name, reg.version, reg.model_uri, reg.champion_changed, summary.to_json(), winner.artifact_uri)


def propose(winner, reg, data_fingerprint: str, submitted_by: str, kfp_run_name: str, tracking_uri: str) -> dict:
    """Record the evidence for the proposed version and return what the summary says of it:
    its status, the evidence digest, the gates and the command a person runs next."""
    from mlflow import MlflowClient

    from components.core.registry import approval, evidence

    client = MlflowClient()
    by = approval.current_identity()
    facts = evidence.build(
        winner, reg, data_fingerprint, submitted_by or str(by), kfp_run_name, winner.lineage.get("images", "")
    )
    digest = approval.propose(client, reg.name, reg.version, winner.run_id, facts, by)
    failed = [g["name"] for g in facts["gates"] if not g["passed"]]
    where = "" if tracking_uri.startswith(("http://", "https://")) else " --workdir WORKDIR"
    command = f'skin-cancer approve {reg.version} --reason "..."{where}'
    if failed:
        command += "".join(f" --override-gate {g}" for g in failed)
    return {
        "status": approval.PENDING,
        "evidence_sha256": digest,
        "gates": facts["gates"],
        "next": (
            f"**Waiting for approval.** Version {reg.version} is `@challenger` with approval.status = pending; "
            f"nothing was deployed and `@champion` did not move. Gates: "
            + ", ".join(f"{g['name']} {'passed' if g['passed'] else 'FAILED'}" for g in facts["gates"])
            + f". To make it the champion, a person with EDIT on {reg.name} runs `{command}` "
            f'(or `skin-cancer reject {reg.version} --reason "..."`); evidence: SHA-256 {digest}.'
        ),
        "approve_command": command,
    }


def selection_report(parsed: list, winner, reg, val, test, stored: dict | None = None) -> tuple[str, str, str | None]:
    """What the selection step shows, kept with the registered version: the comparison figures
    (MLflow ``selection/``), the model card (MLflow ``model_card.md`` and beside the Model
    artifact) and the dashboard page (MLflow ``selection/dashboard.html``).
    Returns (card, page, why the card is not beside the Model artifact, or None)."""
    import logging

    from components.core.registry import tracking
    from components.core.reporting import model_card

    by_split, missing = _comparison_pngs(parsed, winner, val, test, stored or {})
    pngs = {f"compare_{split}.png": png for split, png in by_split.items()}
    selection_figures = tracking.log_pngs(pngs, "selection", run_id=winner.run_id) if pngs else []
    from mlflow import MlflowClient

    approval_lines = model_card.approval_lines_for(MlflowClient(), reg.name, reg.version)
    card = model_card.build(winner, reg, parsed, [*winner.figures, *selection_figures], approval_lines)
    tracking.log_text(card, model_card.CARD_FILE, winner.run_id)
    problem = model_card.write_beside_model(card, winner.artifact_uri)
    if problem:
        logging.getLogger(__name__).warning("model card not written beside the Model artifact: %s", problem)
    from components.core.reporting import dashboard

    page = dashboard.render(parsed, winner, reg, by_split, card, missing, _subgroups_png(winner))
    tracking.log_text(page, "selection/dashboard.html", winner.run_id)
    return card, page, problem


def _subgroups_png(winner) -> bytes | None:
    """The winner's subgroup figure from its training run, or None (no report, or unreadable)."""
    import logging

    import mlflow

    uri = (getattr(winner, "subgroups", None) or {}).get("png")
    if not uri:
        return None
    try:
        with open(mlflow.artifacts.download_artifacts(uri), "rb") as fh:
            return fh.read()
    except Exception:  # noqa: BLE001 - the page says less; the registration stands
        logging.getLogger(__name__).exception("could not read %s", uri)
        return None


def _comparison_pngs(parsed: list, winner, val, test, stored: dict) -> tuple[dict[str, bytes], list[str]]:
    """Every model's curves on validation and on test (PNG by split), from the scores each
    training run kept in MLflow; and the models without scores (an older run). A drawing failure leaves the
    registration standing: it is logged and the page says so."""
    import logging

    import numpy as np

    from components.core.registry import tracking

    curves: dict[str, list] = {"val": [], "test": []}
    missing = []
    try:
        from components.core.evaluation import figures

        for r in parsed:
            scores = stored[r.run_id] if r.run_id in stored else tracking.load_scores(r.run_id)
            if not scores or len(scores["val"]) != len(val) or len(scores["test"]) != len(test):
                missing.append(f"{r.name} (its MLflow run kept no scores for these images)")
                continue
            for split, labels in (("val", val.labels), ("test", test.labels)):
                curves[split].append(
                    figures.Scored(
                        r.name, np.asarray(labels).astype(int), np.asarray(scores[split], dtype=float), r.threshold
                    )
                )
        return (
            {split: figures.comparison_png(models, split, winner.name) for split, models in curves.items() if models},
            missing,
        )
    except Exception as err:
        logging.getLogger(__name__).exception("could not draw the comparison figures")
        return {}, [f"any model (drawing failed: {type(err).__name__}: {err})"]
