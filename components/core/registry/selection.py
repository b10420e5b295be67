"""Selection and promotion policy, as pure functions: which of this run's models wins, and
whether it replaces the champion. No MLflow here (versions.py does the writing).

The run's winner: the best VALIDATION accuracy; ties: AUC (an undefined AUC last), then the
smaller model, then name and run id, so the order never depends on the order results arrive in.
Against the champion: both models are scored on this run's validation images the champion never
trained on (its own training images would flatter it); too few of them keep the champion.
"""

from __future__ import annotations

import math

import numpy as np

from components.core.data.dataset import SplitArrays
from components.core.evaluation.metrics import classification_metrics
from components.core.step_results import TrainSummary

CHAMPION = "champion"
CHALLENGER = "challenger"

# The one promotion rule, said the same way here, in the run summary and in docs/how-it-works.md.
PROMOTION_RULE = (
    "The new model becomes @champion when it is at least as good as the current champion on this "
    "run's validation data: higher accuracy, or equal accuracy and higher AUC; on an exact tie the "
    "newer model (trained on the newer data) wins. Otherwise it is registered as @challenger."
)


def auc_or_lowest(auc: float | None) -> float:
    """An AUC to rank by: an undefined one (NaN: one class in validation) ranks below every real one.
    NaN compares false with everything, so left as it is it would make the order depend on the input's."""
    return -1.0 if auc is None or math.isnan(auc) else float(auc)


def rank_key(result) -> tuple:
    """Sorts this run's models best first: highest validation accuracy; ties: higher validation
    AUC (NaN last), then the smaller model, then name and run id (so equal models still have one
    order, whatever order the results arrive in)."""
    return (-result.val["accuracy"], -auc_or_lowest(result.val["auc"]), result.params, result.name, result.run_id)


def select_winner(results: list[TrainSummary]) -> TrainSummary:
    if not results:
        raise ValueError("no trained models to select from")
    return min(results, key=rank_key)


# Fewer unseen validation images than this (or one class missing) cannot decide between two
# models: the standard error of an accuracy is then at least sqrt(0.25 / 10) ~ 0.16 at p = 0.5,
# larger than the differences worth acting on. The champion then stays, and the summary says why.
MIN_UNSEEN_IMAGES = 10


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
    out = {
        "compared_on": int(idx.size),
        "validation_images": len(val),
        "champion_training_set": "unknown" if seen is None else "recorded",
    }
    if idx.size < MIN_UNSEEN_IMAGES or not both_classes:
        out.update(
            decided=False,
            reason=(
                f"only {idx.size} of {len(val)} validation images are unseen by the champion"
                f"{'' if both_classes else ' and they lack a class'}; at least "
                f"{MIN_UNSEEN_IMAGES} of both classes are needed to decide, so the champion stays"
            ),
        )
        return out
    for who, scored in (("mine", mine), ("theirs", theirs)):
        out[who] = classification_metrics(labels, scored["val_scores"][idx], scored["threshold"])
    out["decided"] = True
    return out


def quality_key(scored: dict, version) -> tuple:
    """Total order on registered models: val accuracy, then val AUC (NaN lowest), then version."""
    return (scored["val"]["accuracy"], auc_or_lowest(scored["val"]["auc"]), int(version))


def promotes(comparison: dict, version, champion_version) -> bool:
    """The rule: the newcomer ``version`` becomes champion when the comparison could decide and it
    is at least as good as ``champion_version`` on the images compared (:func:`quality_key`)."""
    return comparison["decided"] and (
        quality_key({"val": comparison["mine"]}, version) > quality_key({"val": comparison["theirs"]}, champion_version)
    )
