"""What a reviewer reads before approving a proposed model: one JSON document, stored in the
version's MLflow run with its SHA-256 on the version (approval.py), so an approval can prove
which evidence it was given and a later change to it is caught.

Gates are checks a person must see pass, or override by name with a reason:
- ``beats_champion``: the promotion rule (selection.py) on images unseen by both models;
- ``subgroup_recall``: no skin-tone or acquisition group of 30+ images whose malignant recall
  falls short (evaluation/subgroups.py); a missing subgroup report fails it.
"""

from __future__ import annotations

from components.core import settings
from components.core.evaluation.confidence import intervals

FORMAT = 1


def _with_intervals(metrics: dict) -> dict:
    ci = intervals(metrics) if "confusion_matrix" in metrics else {}
    return {**metrics, "intervals_95": {k: list(v) for k, v in ci.items()}}


def gates(winner, reg) -> list[dict]:
    """Each gate's name, result and why (see the module's docstring)."""
    previous = reg.previous_champion
    if previous is None:
        beats = {"name": "beats_champion", "passed": True, "detail": "no champion to compare with"}
    else:
        c = previous["comparison"]
        beats = {
            "name": "beats_champion",
            "passed": bool(reg.proposed or reg.champion_changed),
            "detail": (
                f"on {c['compared_on']} validation images unseen by champion v{previous['version']}: accuracy "
                f"{c['mine']['accuracy']:.3f} vs {c['theirs']['accuracy']:.3f}"
                if c.get("decided")
                else c.get("reason", "not decided")
            ),
        }
    report = getattr(winner, "subgroups", None) or {}
    if report.get("gate"):
        subgroup = {k: report["gate"][k] for k in ("name", "passed", "detail") if k in report["gate"]}
    else:
        subgroup = {
            "name": "subgroup_recall",
            "passed": False,
            "detail": f"no subgroup report ({report.get('error', 'the training run made none')})",
        }
    return [beats, subgroup]


def build(winner, reg, data_fingerprint: str, submitted_by: str, kfp_run_name: str, pipeline_images: str) -> dict:
    """The evidence for ``reg`` (versions.Registration) of ``winner`` (its TrainSummary)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("skin-cancer-kfp")
    except PackageNotFoundError:
        package = "unknown"
    report = getattr(winner, "subgroups", None) or {}
    referral = {k: v for k, v in (winner.referral or {}).items() if k in ("val", "test")}
    return {
        "format": FORMAT,
        "registered_model": reg.name,
        "version": str(reg.version),
        "model_uri": reg.model_uri,
        "mlflow_run_id": winner.run_id,
        "model": {"name": winner.name, "family": winner.family, "params": winner.params},
        "kfp_run": {"id": settings.run_id(), "name": kfp_run_name},
        "pipeline": {"name": settings.PIPELINE_NAME, "package_version": package, "images": pipeline_images},
        "submitted_by": submitted_by,
        "data_fingerprint": data_fingerprint,
        "threshold": winner.threshold,
        "validation": _with_intervals(winner.val),
        "test": _with_intervals(winner.test),
        "champion_comparison": reg.previous_champion,
        "referral": referral or None,
        "subgroups": {k: report[k] for k in ("uri", "sha256") if k in report} or None,
        "gates": gates(winner, reg),
    }
