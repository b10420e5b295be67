"""The model card of a registered version: what it is for, what it learned from, how good it is
(with 95 % intervals), how it decides, how it compares with the champion, and its limits.

Written by the selection step (:func:`build`) and kept in three places: the registered
version's MLflow run (``model_card.md``), the selection step's KFP output, and beside the
winner's Model artifact (``model.keras``, ``model.json``, ``model_card.md``), where the server
finds it for ``GET /model-card`` (:func:`find`). This module imports nothing heavy at the top:
the server imports it at start-up.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

CARD_FILE = "model_card.md"

log = logging.getLogger(__name__)

INTENDED_USE = (
    "Decision support for clinicians looking at a **dermoscopic** image of a skin lesion: the model "
    "estimates p(malignant) and labels the image malignant at or above its decision threshold. "
    "**It is not a diagnosis.** Every result must be interpreted by a qualified clinician with the "
    "patient's history and examination, and a suspicious lesion must be referred or biopsied whatever "
    "the model says. Not for self-diagnosis by patients, not for triage without a clinician."
)

LIMITS = (
    "Dermoscopic images only: clinical (non-dermoscopic) and phone photographs differ in light, scale "
    "and colour, and were never seen in training.",
    "Two classes only (benign, malignant): it names no diagnosis (melanoma, basal cell carcinoma, ...). "
    'It refers images that do not look like dermoscopy and cases it cannot call ("When the model refers"), '
    "but a dermoscopic image of a lesion kind the data set lacks looks in scope and still gets an answer.",
    "Trained and evaluated on this data set's population only (ISIC-derived public images; the ISIC "
    "archive under-represents darker skin types): performance on other populations, skin types, cameras "
    "and clinics is unknown.",
    "Not validated prospectively or in clinical use: the figures above are retrospective, on held-out "
    "images of the same collection.",
    "The threshold buys malignant recall with false positives (see specificity); the probabilities "
    "are only as calibrated as the Brier score and ECE above say.",
)


def _pct(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _with_ci(value: float, ci: tuple[float, float]) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isnan(ci[0]):
        return f"{value:.3f}"
    return f"{value:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"


def metrics_table(val: dict, test: dict) -> list[str]:
    """Validation and test figures side by side, each with its 95 % interval."""
    from components.core.evaluation.confidence import intervals

    ci = {"val": intervals(val), "test": intervals(test)}
    rows = ["| metric | validation (95 % CI) | test (95 % CI) |", "|---|---|---|"]
    for key, label in (
        ("accuracy", "accuracy"),
        ("sensitivity", "sensitivity (malignant recall)"),
        ("specificity", "specificity"),
        ("auc", "ROC AUC"),
    ):
        rows.append(f"| {label} | {_with_ci(val[key], ci['val'][key])} | {_with_ci(test[key], ci['test'][key])} |")
    for key, label in (("brier", "Brier score (lower is better)"), ("ece", "ECE, 10 bins (lower is better)")):
        rows.append(f"| {label} | {_pct(val.get(key))} | {_pct(test.get(key))} |")
    rows.append(f"| images | {val.get('n', '?')} | {test.get('n', '?')} |")
    return rows


def data_table(lineage: dict) -> list[str]:
    from components.core.settings import CLASSES

    rows = [
        "| split | " + " | ".join(CLASSES) + " | total | MLflow dataset (digest) |",
        "|---|" + "---|" * (len(CLASSES) + 2),
    ]
    for split in ("train", "val", "test"):
        d = lineage.get("datasets", {}).get(split)
        if not d:
            continue
        counts = d.get("class_counts", {})
        rows.append(
            f"| {split} | "
            + " | ".join(str(counts.get(c, 0)) for c in CLASSES)
            + f" | {sum(counts.values())} | `{d['name']}` ({d['digest']}) |"
        )
    return rows


REFERRAL_ROWS = (
    ("refer_rate", "referred, all reasons"),
    ("refer_rate_out_of_scope", "referred: out of scope"),
    ("refer_rate_uncertain", "referred: uncertain"),
    ("decided_accuracy", "accuracy of the decided images"),
    ("decided_malignant_recall", "malignant recall of the decided images"),
    ("decided_specificity", "specificity of the decided images"),
    ("coverage_benign", "conformal coverage, benign"),
    ("coverage_malignant", "conformal coverage, malignant"),
)


def referral_table(referral: dict) -> list[str]:
    rows = ["| | validation | test |", "|---|---|---|"]
    for key, label in REFERRAL_ROWS:
        rows.append(
            f"| {label} | {_pct(referral.get('val', {}).get(key))} | {_pct(referral.get('test', {}).get(key))} |"
        )
    rows.append(
        f"| images (decided) | {int(referral.get('val', {}).get('n', 0))} "
        f"({int(referral.get('val', {}).get('decided', 0))}) | {int(referral.get('test', {}).get('n', 0))} "
        f"({int(referral.get('test', {}).get('decided', 0))}) |"
    )
    return rows


def referral_section(winner) -> list[str]:
    """ "When the model refers": the decision policy stored with the model (a TrainSummary's
    ``decision``) and its measured figures (``referral``)."""
    policy, referral = winner.decision, winner.referral
    if not policy or not referral:
        return [
            "## When the model refers",
            "",
            "This model was trained without a decision policy: it cannot "
            "refer, and the predictor and server refuse it.",
            "",
        ]
    sets, scope = policy["sets"], policy["scope"]
    return [
        "## When the model refers",
        "",
        "Every prediction is `benign`, `malignant` or `refer`; a refer is never a result. "
        "The policy is fitted in training on held-out data, stored with the model (`decision.json`, "
        "`scope.npz`) and applied by every consumer (components/core/decision):",
        "",
        "- **Out of scope**: plain image checks (too small, blank, no colour, too dark, overexposed), then the "
        f"{scope.get('method', 'distance')} among the {scope.get('train_images', '?')} training images, on ImageNet "
        f"features ({scope['features']}); the limit is set so that {100 * scope['false_flag_rate']:.1f} % of "
        "validation images are flagged. An out-of-scope image gets no benign or malignant answer, whatever p says.",
        f"- **Uncertain**: class-conditional split conformal prediction at coverage level {sets['level']:.2f}, "
        f"calibrated on validation: benign is in the prediction set when p(malignant) <= {sets['benign_max_p']:.4f}, "
        f"malignant when p(malignant) >= {sets['malignant_min_p']:.4f}. The model decides only when the set is "
        "exactly the class the threshold gives; otherwise it refers.",
        "",
        *referral_table(referral),
        "",
        "Coverage is the share of each class's images whose prediction set holds their true class; the test "
        "split is reported only. `figures/risk_coverage.png` shows the accuracy bought by each refer rate.",
        "",
    ]


APPROVAL_START, APPROVAL_END = "<!-- approval -->", "<!-- /approval -->"


def approval_section(version: str, tags: dict, events: list[dict], limit: int = 15) -> list[str]:
    """ "Approval": this version's decision (its ``approval.*`` tags) and the registered model's
    history, newest first (registry/approval.py). Between markers, so a decision made later
    rewrites only this part of the card (:func:`with_approval`)."""
    status = tags.get("approval.status", "")
    if status in ("approved", "rejected", "rolled back"):
        state = (
            f"Version {version} is **{status}**"
            + (
                f": by {tags.get('approval.by', '?')}"
                f"{'' if tags.get('approval.authenticated') == 'true' else ' (unauthenticated)'}"
                f" at {tags.get('approval.at', '?')}, reason: {tags.get('approval.reason', '')}"
                if tags.get("approval.by")
                else ""
            )
            + (f"; gate(s) overridden: {tags['approval.override']}" if tags.get("approval.override") else "")
            + "."
        )
    elif status == "pending":
        state = (
            f"Version {version} is **waiting for a person's approval** (`@challenger`); evidence SHA-256 "
            f"`{tags.get('approval.evidence_sha256', '?')}`. It serves no one until approved."
        )
    elif status == "not required":
        state = f"Version {version} became champion by the pipeline's rule; that pipeline did not require approval."
    else:
        state = f"Version {version} was not proposed for approval."
    rows = ["| when (UTC) | event | version | from | by | reason |", "|---|---|---|---|---|---|"]
    for e in events[:limit]:
        rows.append(
            f"| {e.get('at', '?')} | {e.get('event', '?')} | {e.get('version') or ''} | {e.get('from_version') or ''} "
            f"| {e.get('by', '?')} | {str(e.get('reason', '')).replace('|', '/')} |"
        )
    return [
        APPROVAL_START,
        "## Approval",
        "",
        state,
        "",
        "History of the registered model (newest first; `skin-cancer history` lists all):",
        "",
        *(rows if events else ["No decision recorded yet."]),
        "",
        APPROVAL_END,
    ]


def approval_lines_for(client, name: str, version: str) -> list[str]:
    """:func:`approval_section` for ``version`` as the registry has it now."""
    from mlflow.exceptions import MlflowException

    from components.core.registry import approval

    try:
        tags = client.get_model_version(name, str(version)).tags
    except MlflowException as err:  # a card drawn for a version the registry does not hold
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        tags = {}
    return approval_section(str(version), tags, approval.history(client, name))


def refresh_approval(client, name: str, version: str) -> list[str]:
    """After a person's decision: rewrite the approval section of ``version``'s card where it is
    kept (its MLflow run's ``model_card.md`` and ``selection/dashboard.html``, and beside its Model
    artifact). Returns what could not be rewritten; the decision itself is already in the registry."""
    import html

    import mlflow

    v = client.get_model_version(name, str(version))
    section = approval_lines_for(client, name, version)
    problems = []
    try:
        card = with_approval(
            Path(mlflow.artifacts.download_artifacts(run_id=v.run_id, artifact_path=CARD_FILE)).read_text(), section
        )
        client.log_text(v.run_id, card, CARD_FILE)
    except Exception as err:  # noqa: BLE001 - reported to the person, the decision stands
        return [f"model card of run {v.run_id}: {type(err).__name__}: {err}"]
    try:
        page = Path(
            mlflow.artifacts.download_artifacts(run_id=v.run_id, artifact_path="selection/dashboard.html")
        ).read_text()
        head, rest = page.split('<pre id="model-card">', 1)
        page = f'{head}<pre id="model-card">{html.escape(card)}</pre>{rest.split("</pre>", 1)[1]}'
        client.log_text(v.run_id, page, "selection/dashboard.html")
    except Exception as err:  # noqa: BLE001
        problems.append(f"dashboard of run {v.run_id}: {type(err).__name__}: {err}")
    if v.tags.get("model_artifact"):
        problem = write_beside_model(card, v.tags["model_artifact"])
        if problem:
            problems.append(problem)
    return problems


def with_approval(card: str, section: list[str]) -> str:
    """``card`` with its approval section replaced by ``section`` (appended when it has none)."""
    text = "\n".join(section)
    if APPROVAL_START in card and APPROVAL_END in card:
        head, rest = card.split(APPROVAL_START, 1)
        return head + text + rest.split(APPROVAL_END, 1)[1]
    return card.rstrip("\n") + "\n\n" + text + "\n"


def tested_on_section(winner) -> list[str]:
    """ "Who it was tested on": the test split's figures per skin tone and acquisition group
    (evaluation/subgroups.py, from the training run's ``subgroups.json``)."""
    report = getattr(winner, "subgroups", None) or {}
    body = report.get("table") or f"No subgroup report: {report.get('error', 'the training run made none')}."
    where = f" Source: `{report['uri']}` (SHA-256 `{report.get('sha256', '?')}`)." if report.get("uri") else ""
    return ["## Who it was tested on", "", body.strip() + where, ""]


def build(
    winner,
    reg,
    results: list,
    figure_paths: list[str] | None = None,
    approval_lines: list[str] | None = None,
) -> str:
    """The card, as Markdown, for registration ``reg`` (versions.Registration) of ``winner`` (its
    step_results.TrainSummary). ``results``: every model of this run (the selection table);
    ``approval_lines``: :func:`approval_section`; ``winner.subgroups``: its "Who it was tested on"."""
    from components.core import settings
    from components.core.registry.selection import PROMOTION_RULE
    from components.core.reporting import promotion_report

    lineage = winner.lineage
    min_sens = winner.config.min_sensitivity
    figures = figure_paths if figure_paths is not None else winner.figures
    lines = [
        f"# Model card: {reg.name} version {reg.version}",
        "",
        f"Registered as `@{reg.alias}`; "
        + (f"the champion is version {reg.champion_version}. " if reg.champion_version else "there is no champion. ")
        + f"Model `{winner.name}` (family `{winner.family}`, {winner.params:,} parameters), "
        f"MLflow run `{winner.run_id}`, registry URI `{reg.model_uri}`.",
        *(
            [
                "Ensemble: the mean of the calibrated p(malignant) of "
                + ", ".join(f"`{m['name']}` ({m['family']}, MLflow run `{m['run_id']}`)" for m in winner.members)
                + "; each member's own card, figures and lineage are in its run.",
            ]
            if getattr(winner, "members", None)
            else []
        ),
        f"KFP run: `{settings.run_id() or 'none (a local run)'}`. "
        f"Images: {lineage.get('images') or 'none recorded (a kfp.local run uses the local Python environment)'}.",
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Data",
        "",
        f"Raw images: `{lineage.get('data_uri') or 'not recorded'}`, data fingerprint "
        f"`{lineage.get('data_fingerprint', '?')}` (object keys and ETags of every raw image). "
        "Validation is a share of the raw train folder, each image's side fixed by the hash of its key; "
        "test is the raw test folder, reported only, never used to choose a model or a threshold.",
        "",
        *data_table(lineage),
        "",
        "## Metrics",
        "",
        f"At the stored decision threshold {winner.threshold:.4f}. Intervals: Wilson score intervals for "
        "accuracy, sensitivity and specificity; Hanley-McNeil normal interval for the AUC.",
        "",
        *metrics_table(winner.val, winner.test),
        "",
        "## Decision threshold",
        "",
        f"Threshold **{winner.threshold:.4f}**, chosen on validation data only: the highest threshold whose "
        f"validation malignant recall reaches {min_sens:.2f} plus one standard error of that recall "
        f"(sqrt(s(1-s)/n_malignant)), so recall on new images is expected to stay at or above {min_sens:.2f}; "
        "the highest such threshold gives the best specificity at that recall. It is stored with the model "
        "(MLflow model metadata, `model.json`) and used by every prediction.",
        "",
        "## Calibration",
        "",
        f"Brier score {_pct(winner.val.get('brier'))} (validation), {_pct(winner.test.get('brier'))} (test); "
        f"expected calibration error (10 equal-width bins) {_pct(winner.val.get('ece'))} (validation), "
        f"{_pct(winner.test.get('ece'))} (test). "
        + (
            f"Temperature scaling fitted on validation (T = {winner.temperature:.3f}) is folded into the "
            "model's head, before the threshold was chosen. "
            if winner.temperature != 1.0
            else "No temperature scaling was applied. "
        )
        + "A probability is not a diagnosis: read the reliability "
        "diagrams below before reading a p(malignant) as a frequency.",
        "",
        *referral_section(winner),
        *tested_on_section(winner),
        *(approval_lines or []),
        "",
        "## Figures",
        "",
        f"In the MLflow run `{winner.run_id}` (artifacts):",
        "",
        *([f"- `{path}`" for path in figures] or ["- none were recorded"]),
        "",
        "## How it was chosen and compared with the champion",
        "",
        f"{promotion_report.decision(reg)}.",
        "",
        "Selection uses validation data only. " + PROMOTION_RULE,
        *promotion_report.comparison_lines(reg.previous_champion),
        "",
        "This run's models:",
        "",
        *promotion_report.models_table(results, winner),
        "",
        "## Known limits",
        "",
        *[f"- {limit}" for limit in LIMITS],
        "",
    ]
    return "\n".join(lines)


def write_beside_model(card: str, artifact_uri: str) -> str | None:
    """The card beside the winner's Model artifact (``model.keras``, ``model.json``), where the
    server finds it; on a cluster the deploy step hands that folder to KServe. Returns None on
    success, else why it could not be written (the caller reports it; registration stands)."""
    if not artifact_uri:
        return "the winner has no Model artifact URI"
    from components.core.data import storage

    try:
        storage.write_bytes(storage.join(artifact_uri, CARD_FILE), card.encode("utf-8"))
    except Exception as err:  # e.g. KFP's own minio:// store, which this project cannot write
        return f"{type(err).__name__}: {err}"
    return None


def find(model_uri: str, model_name: str = "", model_version: str = "") -> str | None:
    """The card of a served model, or None if it has none: ``model_card.md`` in its model
    directory (local, or ``s3://``: what KServe copies), else, for a model from the MLflow
    registry or a run, in that version's run. A directory model never reaches for MLflow: the
    server may have no access to it (KServe's does not)."""
    if Path(model_uri).is_dir():
        path = Path(model_uri, CARD_FILE)
        return path.read_text(encoding="utf-8") if path.is_file() else None
    if model_uri.startswith("s3://"):
        from components.core.data import storage

        try:
            return storage.read_bytes(storage.join(model_uri, CARD_FILE)).decode("utf-8")
        except Exception as err:
            log.info("no model card beside %s: %s", model_uri, type(err).__name__)
            return None
    try:
        import mlflow

        if model_uri.startswith("runs:/"):
            run_id = model_uri[len("runs:/") :].split("/", 1)[0]
        elif model_uri.startswith("models:/") and model_version:
            run_id = mlflow.MlflowClient().get_model_version(model_name, model_version).run_id
        else:
            return None
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CARD_FILE)
        return Path(path).read_text(encoding="utf-8")
    except Exception as err:  # an older version without a card
        log.info("no model card in MLflow for %s: %s", model_uri, type(err).__name__)
        return None
