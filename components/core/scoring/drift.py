"""Monitoring: do the scored images still look like the ones the model learned from, and do its
answers still look like the ones it gave on validation?

Two kinds of signal, kept apart because they mean different things:

* **input** (``input_drift``): the images themselves changed (a new camera, other lighting,
  another clinic). Measured on ImageNet EfficientNet-Lite0 features (decision/features.py), which
  do not encode benign versus malignant, so a day with a different mix of lesions does not read
  as input drift. The reference is the train split's features, stored with every model version
  by its decision policy (``scope.npz``): nothing extra to capture or to keep in step.
  The features are unit length (as the scope detector uses them), projected on the reference's
  first :data:`COMPONENTS` principal components; a two-sample Kolmogorov-Smirnov test per
  component, Bonferroni-corrected.
* **output** (``prediction_drift``, ``decision_drift``): the model's answers changed. The
  p(malignant) distribution against the validation split's (the training run's ``scores.json``;
  two-sample KS), and the mix of benign / malignant / uncertain decisions against the same
  policy applied to the validation p (chi-square test of homogeneity). A change in the mix of
  lesions moves these and not the input signal; a change in the images usually moves both.

Below ``min_images`` scored images a signal says "too few images to judge" instead of a verdict.
SciPy's tests; no other monitoring library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from components.core.decision.scope import normalised
from components.core.settings import DRIFT_ALPHA, DRIFT_MIN_IMAGES

COMPONENTS = 8  # principal components of the reference features that the input test looks at
DRIFT, NO_DRIFT, TOO_FEW, NO_REFERENCE = "drift", "no drift", "too few images to judge", "no reference"
DECISION_KINDS = ("benign", "malignant", "uncertain")  # out-of-scope refers are an input matter


@dataclass
class InputReference:
    """The reference's principal axes, and its own projections on them."""

    mean: np.ndarray  # (d,)
    axes: np.ndarray  # (k, d)
    projections: np.ndarray  # (n, k)

    @classmethod
    def fit(cls, features: np.ndarray, components: int = COMPONENTS) -> "InputReference":
        ref = normalised(features)
        mean = ref.mean(axis=0)
        _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
        axes = vt[:min(components, len(vt))].astype(np.float32)
        return cls(mean.astype(np.float32), axes, ((ref - mean) @ axes.T).astype(np.float32))

    def project(self, features: np.ndarray) -> np.ndarray:
        """``(n, k)``: what the scoring rows keep per image (a few floats, not 1,584)."""
        return ((normalised(features) - self.mean) @ self.axes.T).astype(np.float32)


def _verdict(name: str, n: int, min_images: int, p_value: float, alpha: float, **detail) -> dict:
    if n < min_images:
        verdict = TOO_FEW
    else:
        verdict = DRIFT if p_value < alpha else NO_DRIFT
    return {"signal": name, "verdict": verdict, "n": int(n), "p_value": float(p_value), "alpha": alpha,
            "min_images": min_images, **detail}


def input_drift(reference: InputReference, projections: np.ndarray, alpha: float = DRIFT_ALPHA,
                min_images: int = DRIFT_MIN_IMAGES) -> dict:
    """KS per principal component; the smallest p-value times the number of components."""
    from scipy.stats import ks_2samp

    projections = np.asarray(projections, np.float32).reshape(-1, reference.axes.shape[0])
    if len(projections) == 0:
        return _verdict("input", 0, min_images, math.nan, alpha)
    tests = [ks_2samp(reference.projections[:, j], projections[:, j]) for j in range(projections.shape[1])]
    worst = int(np.argmin([t.pvalue for t in tests]))
    p = min(1.0, float(tests[worst].pvalue) * len(tests))
    return _verdict("input", len(projections), min_images, p, alpha, test="KS per principal component, Bonferroni",
                    statistic=float(tests[worst].statistic), component=worst)


def prediction_drift(reference_p: np.ndarray | None, p: np.ndarray, alpha: float = DRIFT_ALPHA,
                     min_images: int = DRIFT_MIN_IMAGES) -> dict:
    """Two-sample KS on p(malignant) against the validation split's."""
    from scipy.stats import ks_2samp

    p = np.asarray(p, float)
    if reference_p is None or len(reference_p) == 0:
        return {"signal": "prediction", "verdict": NO_REFERENCE, "n": int(len(p))}
    if len(p) == 0:
        return _verdict("prediction", 0, min_images, math.nan, alpha)
    test = ks_2samp(np.asarray(reference_p, float), p)
    return _verdict("prediction", len(p), min_images, float(test.pvalue), alpha, test="KS on p(malignant)",
                    statistic=float(test.statistic), mean_p=float(p.mean()),
                    reference_mean_p=float(np.mean(reference_p)))


def decision_kinds(decisions, refer_reasons) -> list[str]:
    """benign / malignant / uncertain per in-scope image (out-of-scope refers are left out)."""
    out = []
    for d, r in zip(decisions, refer_reasons):
        if r == "out_of_scope":
            continue
        out.append("uncertain" if d == "refer" else d)
    return out


def reference_decisions(policy, reference_p: np.ndarray) -> list[str]:
    """The policy's decisions on the validation p, in scope (the same function the scoring applies)."""
    decided = [policy.decide(float(p), 0.0) for p in reference_p]
    return decision_kinds([d.decision for d in decided], [d.refer_reason for d in decided])


def decision_drift(reference_kinds: list[str] | None, kinds: list[str], alpha: float = DRIFT_ALPHA,
                   min_images: int = DRIFT_MIN_IMAGES) -> dict:
    """Chi-square test of homogeneity: the decision mix against the validation split's."""
    from scipy.stats import chi2_contingency

    if not reference_kinds:
        return {"signal": "decision", "verdict": NO_REFERENCE, "n": len(kinds)}
    table = np.array([[sum(k == kind for k in rows) for kind in DECISION_KINDS]
                      for rows in (reference_kinds, kinds)], float)
    shares = {kind: (table[1, i] / table[1].sum() if table[1].sum() else math.nan)
              for i, kind in enumerate(DECISION_KINDS)}
    ref_shares = {kind: table[0, i] / table[0].sum() for i, kind in enumerate(DECISION_KINDS)}
    table = table[:, table.sum(axis=0) > 0]
    if len(kinds) == 0 or table.shape[1] < 2:
        p = 1.0 if len(kinds) else math.nan
    else:
        p = float(chi2_contingency(table).pvalue)
    return _verdict("decision", len(kinds), min_images, p, alpha, test="chi-square, decision mix",
                    shares=shares, reference_shares=ref_shares)


def any_drift(signals: list[dict]) -> list[str]:
    """The names of the signals that found drift."""
    return [s["signal"] for s in signals if s["verdict"] == DRIFT]
