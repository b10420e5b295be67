"""The decision policy, fitted once in training, stored with the model, applied by every consumer.

Stored as files beside the model (``decision.json``: threshold, conformal sets, the scope
limit; ``scope.npz``: the train images' features; ``monitoring.npz``: what the model and policy
made of the validation images, the reference batch scoring's drift checks compare with; each
array file's SHA-256 in decision.json), in the Model artifact's folder and in the MLflow run
(``decision/``). A model without the first two is refused by name, as a model without a
threshold is: no consumer ever decides without the policy. ``monitoring.npz`` is optional (a
model trained before it existed is monitored against a reference given by the caller, or not).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core.decision import conformal, features, image_checks
from components.core.decision.scope import NEIGHBOUR, ScopeModel
from components.core.settings import CLASSES

DECISION_FILE = "decision.json"
OOD_FILE = "scope.npz"
MONITORING_FILE = "monitoring.npz"
FORMAT = 1
REFER = "refer"
OUT_OF_SCOPE, UNCERTAIN = "out_of_scope", "uncertain"

OUT_OF_SCOPE_TEXT = (
    "This does not look like a dermoscopic image of a skin lesion, so no result is given. "
    "Take a dermoscopic photograph of the lesion, or refer the patient to a clinician."
)
UNCERTAIN_TEXT = (
    "The model cannot tell benign from malignant for this image with the confidence it was "
    "calibrated for: a clinician should assess the lesion."
)


class PolicyError(ValueError):
    """A model's decision policy is missing or damaged: the model is refused, never used without it."""


@dataclass
class Decision:
    decision: str  # benign | malignant | refer
    refer_reason: str | None  # out_of_scope | uncertain | None
    prediction_set: list[str]
    ood_score: float
    problems: list[str] = field(default_factory=list)  # image_checks names, when they refused it

    def to_dict(self) -> dict:
        """The keys every prediction carries (predict's JSON lines, /predict, the V2 outputs)."""
        return {
            "decision": self.decision,
            "refer_reason": self.refer_reason,
            "prediction_set": list(self.prediction_set),
            "ood_score": float(self.ood_score),
        }


def reason_text(decision: Decision) -> str:
    """What a clinician reads about a refer ("" for a benign or malignant decision)."""
    if decision.refer_reason == OUT_OF_SCOPE:
        detail = "; ".join(image_checks.describe(p) for p in decision.problems)
        return OUT_OF_SCOPE_TEXT + (f" ({detail}.)" if detail else "")
    if decision.refer_reason == UNCERTAIN:
        return UNCERTAIN_TEXT
    return ""


@dataclass
class DecisionPolicy:
    threshold: float
    sets: dict[str, float]  # conformal.fit: benign_max_p, malignant_min_p, level
    scope: ScopeModel
    # The validation images as the model and policy saw them (scoring/drift.py's reference):
    # arrays by name, written by training; None for a model trained before it was stored.
    monitoring: dict[str, np.ndarray] | None = None

    # ---- fitting (training) -------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        threshold: float,
        val_labels: np.ndarray,
        val_p: np.ndarray,
        train_features: np.ndarray,
        val_features: np.ndarray,
        coverage: float,
        false_flag_rate: float,
    ) -> "DecisionPolicy":
        """Everything from held-out data: conformal sets on validation p, the scope limit on
        validation features; the feature distribution from the train split."""
        return cls(
            float(threshold),
            conformal.fit(val_labels, val_p, coverage),
            ScopeModel.fit(train_features, val_features, false_flag_rate),
        )

    # ---- applying -----------------------------------------------------------------------------
    def decide(self, p: float, ood_score: float, problems: list[str] | tuple = ()) -> Decision:
        pset = conformal.prediction_set(p, self.sets)
        if problems or not ood_score <= 1.0:  # NaN counts as out of scope
            return Decision(REFER, OUT_OF_SCOPE, pset, ood_score, list(problems))
        label = CLASSES[int(p >= self.threshold)]
        if pset != [label]:  # both classes, none, or the other class than the threshold's
            return Decision(REFER, UNCERTAIN, pset, ood_score)
        return Decision(label, None, pset, ood_score)

    def ood_scores(self, pixels: np.ndarray) -> np.ndarray:
        return self.scope.scores(features.imagenet_features(pixels))

    def decide_images(
        self,
        pixels: np.ndarray,
        p: np.ndarray,
        original_sizes: list[tuple[int, int] | None] | None = None,
        imagenet: np.ndarray | None = None,
    ) -> list[Decision]:
        """Decisions for a batch: ``pixels`` as the model saw them, ``p`` its p(malignant);
        ``imagenet``: their ImageNet features when the caller already has them (batch scoring
        keeps them for drift monitoring), so they are computed once."""
        if not len(pixels):
            scores = np.zeros(0)
        else:
            scores = self.scope.scores(imagenet) if imagenet is not None else self.ood_scores(pixels)
        sizes = original_sizes or [None] * len(pixels)
        return [
            self.decide(float(pi), float(si), image_checks.image_problems(img, size))
            for img, pi, si, size in zip(pixels, p, scores, sizes)
        ]

    # ---- storage ------------------------------------------------------------------------------
    def summary(self) -> dict:
        """The small, readable part (decision.json; the MLflow model's metadata)."""
        return {
            "format": FORMAT,
            "threshold": self.threshold,
            "sets": self.sets,
            "scope": {
                "features": "efficientnet-lite0-imagenet:" + ",".join(features.LAYERS),
                "method": f"cosine distance to nearest train image (k={NEIGHBOUR})",
                "limit": self.scope.limit,
                "false_flag_rate": self.scope.false_flag_rate,
                "train_images": int(self.scope.reference.shape[0]),
                "dimensions": int(self.scope.reference.shape[1]),
            },
        }

    def files(self) -> dict[str, bytes]:
        """``{DECISION_FILE: ..., OOD_FILE: ...}``: what is written beside the model."""
        buf = io.BytesIO()
        np.savez(buf, reference=self.scope.reference)
        arrays = buf.getvalue()
        meta = self.summary()
        meta["scope"]["sha256"] = hashlib.sha256(arrays).hexdigest()
        out = {OOD_FILE: arrays}
        if self.monitoring is not None:
            buf = io.BytesIO()
            np.savez(buf, **self.monitoring)
            out[MONITORING_FILE] = buf.getvalue()
            meta["monitoring"] = {
                "sha256": hashlib.sha256(out[MONITORING_FILE]).hexdigest(),
                "images": int(len(self.monitoring["p"])),
            }
        return {DECISION_FILE: json.dumps(meta, indent=1).encode(), **out}

    def save(self, directory: str | Path) -> None:
        for name, data in self.files().items():
            Path(directory, name).write_bytes(data)

    @classmethod
    def from_files(cls, files: dict[str, bytes], where: str) -> "DecisionPolicy":
        """Read what :meth:`files` wrote; ``where`` names the model in every error."""
        missing = [n for n in (DECISION_FILE, OOD_FILE) if files.get(n) is None]
        if missing:
            raise PolicyError(
                f"{where}: the model has no decision policy ({', '.join(missing)} missing), so it "
                "cannot refer out-of-scope or uncertain images; use a model trained by this "
                "pipeline's current version (it stores the policy with the model)"
            )
        try:
            meta = json.loads(files[DECISION_FILE])
            if meta.get("format") != FORMAT:
                raise PolicyError(f"{where}: decision policy format {meta.get('format')!r}, expected {FORMAT}")
            digest = hashlib.sha256(files[OOD_FILE]).hexdigest()
            if digest != meta["scope"]["sha256"]:
                raise PolicyError(
                    f"{where}: {OOD_FILE} does not match the SHA-256 in {DECISION_FILE} "
                    "(damaged or from another model); re-register the model"
                )
            with np.load(io.BytesIO(files[OOD_FILE]), allow_pickle=False) as arrays:
                scope = ScopeModel(
                    arrays["reference"], float(meta["scope"]["limit"]), float(meta["scope"]["false_flag_rate"])
                )
            sets = {k: float(meta["sets"][k]) for k in ("benign_max_p", "malignant_min_p", "level")}
            policy = cls(float(meta["threshold"]), sets, scope, _monitoring(files, meta, where))
        except PolicyError:
            raise
        except (KeyError, TypeError, ValueError, OSError) as err:
            raise PolicyError(f"{where}: unreadable decision policy ({type(err).__name__}: {err})") from err
        if not (
            math.isfinite(policy.threshold)
            and scope.reference.ndim == 2
            and scope.reference.shape[0] == meta["scope"].get("train_images")
        ):
            raise PolicyError(f"{where}: decision policy with inconsistent shapes or threshold")
        return policy

    @classmethod
    def load(cls, directory: str | Path) -> "DecisionPolicy":
        directory = Path(directory)
        files = {n: (directory / n).read_bytes() if (directory / n).is_file() else None for n in POLICY_FILES}
        return cls.from_files(files, str(directory))


POLICY_FILES = (DECISION_FILE, OOD_FILE, MONITORING_FILE)  # what a stored policy may hold


def _monitoring(files: dict[str, bytes | None], meta: dict, where: str) -> dict[str, np.ndarray] | None:
    """``monitoring.npz`` when decision.json names it (checked against its SHA-256), else None."""
    if "monitoring" not in meta:
        return None
    data = files.get(MONITORING_FILE)
    if data is None or hashlib.sha256(data).hexdigest() != meta["monitoring"]["sha256"]:
        raise PolicyError(
            f"{where}: {MONITORING_FILE} is missing or does not match the SHA-256 in "
            f"{DECISION_FILE}; re-register the model"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {k: arrays[k] for k in arrays.files}
