"""Monitoring: do the scored images still look like the ones the model learned from, and do its
answers still look like the ones it gave on validation?

Two kinds of signal, kept apart because they mean different things:

* **input** (``input_drift``): the images themselves changed (a new camera, other lighting,
  another clinic). Per image, :data:`STATISTICS` colour statistics (per-channel mean and spread)
  and the ImageNet EfficientNet-Lite0 features (decision/features.py; unit length, as the scope
  detector uses them) projected on the first :data:`COMPONENTS` principal axes of the train
  split's features that every model stores with its decision policy (``scope.npz``). Neither
  is trained to tell benign from malignant, but on the real images both still differ between the
  classes (measured: a benign-only batch of 60 real test images read as drift, p = 0.0005,
  against a class-mixed reference). So the test is **stratified by the model's label**: the
  batch's images the model calls benign against the reference images it calls benign, the same
  for malignant (two-sample Kolmogorov-Smirnov per dimension, Bonferroni-corrected over every
  dimension and stratum). A day with another mix of lesions then does not read as input drift;
  a colour or brightness change does.
* **output** (``prediction_drift``, ``decision_drift``): the model's answers changed. The
  p(malignant) distribution against the reference's (two-sample KS), and the mix of benign /
  malignant / uncertain decisions (out-of-scope refers left out: they are an input matter)
  against the reference's (chi-square test of homogeneity). A change in the mix of lesions moves
  these and not the input signal; a change in the images may move both.

The reference is the model's validation split as the model and policy saw it, captured in
training and stored with the model version (``monitoring.npz`` beside the decision policy:
:meth:`Reference.from_validation` writes it, :meth:`Reference.from_policy` reads it). A model
trained before that is monitored against a preprocessed split the caller names, scored at the
start of the run by the same model and policy (:meth:`Reference.from_split`). Without either,
every signal says "no reference".

Below ``min_images`` scored images a signal says "too few images to judge" instead of a verdict.
SciPy's tests; no other monitoring library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core.decision.scope import normalised
from components.core.settings import CLASSES, DRIFT_ALPHA, DRIFT_MIN_IMAGES

COMPONENTS = 8  # principal components of the train features that the input test looks at
STATISTICS = 6  # per-channel mean and standard deviation of the pixels
STRATUM_MIN = 15  # fewest of the batch's images with one label that its stratum is tested on
DRIFT, NO_DRIFT, TOO_FEW, NO_REFERENCE = "drift", "no drift", "too few images to judge", "no reference"
DECISION_KINDS = ("benign", "malignant", "uncertain")  # out-of-scope refers are an input matter


def image_statistics(pixels: np.ndarray) -> np.ndarray:
    """``(n, 6)``: per-channel mean and standard deviation of a uint8 batch, in [0, 1]."""
    px = np.asarray(pixels, np.float32) / 255.0
    return np.concatenate([px.mean(axis=(1, 2)), px.std(axis=(1, 2))], axis=1)


@dataclass
class InputAxes:
    """The principal axes of the train split's ImageNet features (stored with the model)."""

    mean: np.ndarray  # (d,)
    axes: np.ndarray  # (k, d)
    projections: np.ndarray  # (n, k)

    @classmethod
    def fit(cls, features: np.ndarray, components: int = COMPONENTS) -> "InputAxes":
        ref = normalised(features)
        mean = ref.mean(axis=0)
        _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
        axes = vt[: min(components, len(vt))].astype(np.float32)
        return cls(mean.astype(np.float32), axes, ((ref - mean) @ axes.T).astype(np.float32))

    def project(self, features: np.ndarray) -> np.ndarray:
        """``(n, k)``: the features on the principal axes."""
        return ((normalised(features) - self.mean) @ self.axes.T).astype(np.float32)

    def inputs(self, pixels: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``(n, 6 + k)``: what the scoring rows keep per image for the input test (a few floats)."""
        return np.concatenate([image_statistics(pixels), self.project(features)], axis=1).astype(np.float32)


@dataclass
class Reference:
    """The reference side of every signal, one entry per reference image."""

    inputs: np.ndarray  # (n, 6 + k)
    labels: list[str]  # the model's label (threshold) per image: the input test's strata
    p: np.ndarray  # p(malignant)
    kinds: list[str]  # benign / malignant / uncertain; out-of-scope left out (decision_kinds)

    def arrays(self) -> dict[str, np.ndarray]:
        """What is stored with the model (decision policy's ``monitoring``; no pickles)."""
        return {
            "inputs": self.inputs.astype(np.float32),
            "labels": np.asarray(self.labels, dtype=str),
            "p": np.asarray(self.p, np.float32),
            "kinds": np.asarray(self.kinds, dtype=str),
        }

    @classmethod
    def from_policy(cls, policy) -> "Reference | None":
        """The reference stored with the model (None for a model trained before it was)."""
        stored = policy.monitoring
        if stored is None:
            return None
        return cls(
            np.asarray(stored["inputs"], np.float32),
            stored["labels"].tolist(),
            np.asarray(stored["p"], float),
            stored["kinds"].tolist(),
        )

    @classmethod
    def from_validation(
        cls, policy, split, p: np.ndarray, features: np.ndarray, decisions, batch: int = 256
    ) -> "Reference":
        """Built in training from what fitting the policy already computed (the validation split,
        the served model's p, the ImageNet features, the policy's decisions): the same numbers
        :meth:`from_split` gets by scoring the split again."""
        axes = InputAxes.fit(policy.scope.reference)
        statistics = [image_statistics(pixels) for pixels in split.batches(batch)]
        inputs = np.concatenate([np.concatenate(statistics), axes.project(features)], axis=1)
        labels = [CLASSES[int(pi >= policy.threshold)] for pi in p]
        return cls(
            inputs.astype(np.float32),
            labels,
            np.asarray(p, float),
            decision_kinds([d.decision for d in decisions], [d.refer_reason for d in decisions]),
        )

    @classmethod
    def from_split(cls, predictor, split_path: str, axes: InputAxes, batch: int = 64) -> "Reference":
        """Score a preprocessed split (a Dataset directory: the model's validation split) with the
        model and policy, keeping only the few numbers per image the signals need."""
        import tempfile

        from components.core.data import storage
        from components.core.data.dataset import SplitArrays

        if storage.is_s3(split_path):  # a Dataset artifact in the pipeline root: copied, then memory-mapped
            with tempfile.TemporaryDirectory(prefix="skin-cancer-reference-") as tmp:
                for obj in storage.list_objects(split_path):
                    target = Path(tmp, obj.relpath)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(storage.read_bytes(obj.uri))
                return cls.from_split(predictor, tmp, axes, batch)
        split = SplitArrays(split_path)
        inputs, labels, p, decisions, reasons = [], [], [], [], []
        for pixels in split.batches(batch):
            features = predictor.imagenet_features(pixels)
            out = predictor.predict_pixels(pixels, imagenet=features)
            inputs.append(axes.inputs(pixels, features))
            labels += [o["label"] for o in out]
            p += [o["p_malignant"] for o in out]
            decisions += [o["decision"] for o in out]
            reasons += [o["refer_reason"] for o in out]
        width = STATISTICS + axes.axes.shape[0]
        return cls(
            np.concatenate(inputs) if inputs else np.zeros((0, width), np.float32),
            labels,
            np.asarray(p, float),
            decision_kinds(decisions, reasons),
        )


def _verdict(name: str, n: int, min_images: int, p_value: float, alpha: float, **detail) -> dict:
    if n < min_images:
        verdict = TOO_FEW
    else:
        verdict = DRIFT if p_value < alpha else NO_DRIFT
    return {
        "signal": name,
        "verdict": verdict,
        "n": int(n),
        "p_value": float(p_value),
        "alpha": alpha,
        "min_images": min_images,
        **detail,
    }


def input_drift(
    reference: Reference | None,
    inputs: np.ndarray,
    labels: list[str],
    alpha: float = DRIFT_ALPHA,
    min_images: int = DRIFT_MIN_IMAGES,
) -> dict:
    """KS per input dimension within each label's stratum; the smallest p-value times the number
    of tests (Bonferroni)."""
    from scipy.stats import ks_2samp

    if reference is None:
        return {"signal": "input", "verdict": NO_REFERENCE, "n": len(labels)}
    if len(labels) == 0:
        return _verdict("input", 0, min_images, math.nan, alpha)
    inputs = np.asarray(inputs, np.float32).reshape(len(labels), -1)
    ref_labels, labels = np.asarray(reference.labels), np.asarray(labels)
    tests = []
    for label in sorted(set(labels.tolist())):
        mine, theirs = inputs[labels == label], reference.inputs[ref_labels == label]
        if len(mine) < STRATUM_MIN or len(theirs) < STRATUM_MIN:
            continue
        tests += [(label, j, ks_2samp(theirs[:, j], mine[:, j])) for j in range(inputs.shape[1])]
    if not tests:
        return _verdict(
            "input",
            min(len(labels), min_images - 1),
            min_images,
            math.nan,
            alpha,
            test="KS per dimension within each label",
            note="no label with enough images on both sides",
        )
    label, dim, worst = min(tests, key=lambda t: t[2].pvalue)
    p = min(1.0, float(worst.pvalue) * len(tests))
    name = (["mean_r", "mean_g", "mean_b", "sd_r", "sd_g", "sd_b"] + [f"pc{i}" for i in range(inputs.shape[1])])[dim]
    return _verdict(
        "input",
        len(labels),
        min_images,
        p,
        alpha,
        test="KS per dimension within each label, Bonferroni",
        statistic=float(worst.statistic),
        dimension=name,
        stratum=label,
    )


def prediction_drift(
    reference_p: np.ndarray | None, p: np.ndarray, alpha: float = DRIFT_ALPHA, min_images: int = DRIFT_MIN_IMAGES
) -> dict:
    """Two-sample KS on p(malignant) against the validation split's."""
    from scipy.stats import ks_2samp

    p = np.asarray(p, float)
    if reference_p is None or len(reference_p) == 0:
        return {"signal": "prediction", "verdict": NO_REFERENCE, "n": int(len(p))}
    if len(p) == 0:
        return _verdict("prediction", 0, min_images, math.nan, alpha)
    test = ks_2samp(np.asarray(reference_p, float), p)
    return _verdict(
        "prediction",
        len(p),
        min_images,
        float(test.pvalue),
        alpha,
        test="KS on p(malignant)",
        statistic=float(test.statistic),
        mean_p=float(p.mean()),
        reference_mean_p=float(np.mean(reference_p)),
    )


def decision_kinds(decisions, refer_reasons) -> list[str]:
    """benign / malignant / uncertain per in-scope image (out-of-scope refers are left out)."""
    out = []
    for d, r in zip(decisions, refer_reasons):
        if r == "out_of_scope":
            continue
        out.append("uncertain" if d == "refer" else d)
    return out


def decision_drift(
    reference_kinds: list[str] | None, kinds: list[str], alpha: float = DRIFT_ALPHA, min_images: int = DRIFT_MIN_IMAGES
) -> dict:
    """Chi-square test of homogeneity: the decision mix against the validation split's."""
    from scipy.stats import chi2_contingency

    if not reference_kinds:
        return {"signal": "decision", "verdict": NO_REFERENCE, "n": len(kinds)}
    table = np.array(
        [[sum(k == kind for k in rows) for kind in DECISION_KINDS] for rows in (reference_kinds, kinds)], float
    )
    shares = {
        kind: (table[1, i] / table[1].sum() if table[1].sum() else math.nan) for i, kind in enumerate(DECISION_KINDS)
    }
    ref_shares = {kind: table[0, i] / table[0].sum() for i, kind in enumerate(DECISION_KINDS)}
    table = table[:, table.sum(axis=0) > 0]
    if len(kinds) == 0 or table.shape[1] < 2:
        p = 1.0 if len(kinds) else math.nan
    else:
        p = float(chi2_contingency(table).pvalue)
    return _verdict(
        "decision",
        len(kinds),
        min_images,
        p,
        alpha,
        test="chi-square, decision mix",
        shares=shares,
        reference_shares=ref_shares,
    )


def any_drift(signals: list[dict]) -> list[str]:
    """The names of the signals that found drift."""
    return [s["signal"] for s in signals if s["verdict"] == DRIFT]
