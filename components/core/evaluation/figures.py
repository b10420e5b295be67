"""Every figure people look at, drawn in one place: PNG bytes from labels, scores and history.

Per trained model (logged to its MLflow run under ``figures/``, see :func:`evaluation_pngs`):
ROC and precision-recall curves with the decision threshold marked, the confusion matrix at
that threshold, the calibration (reliability) diagram with Brier score and ECE, on validation
and on test (each labelled), and the training curves. For the selection step (the Kubeflow
dashboard's HTML, see :func:`comparison_png`): every model's ROC and PR curves on one split.

The plots are scikit-learn's own displays on matplotlib's object-oriented API with the Agg
backend: no pyplot figure manager (nothing kept alive between figures) and no display needed.
Only this module imports matplotlib, and only the pipeline steps import this module: the
serving path never pays for it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display in a pipeline pod; also keeps pyplot (used by sklearn) headless

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from components.core.evaluation.metrics import classification_metrics  # noqa: E402
from components.core.settings import CLASSES  # noqa: E402

DPI = 100  # 5 x 4 in -> 500 x 400 px: readable in MLflow's artifact view, a few tens of KB each
SIZE = (5.0, 4.0)
SPLIT_TITLES = {"val": "validation", "test": "test (reported only, never used to choose)"}
THRESHOLD_STYLE = dict(marker="o", markersize=8, color="#d62728", zorder=5, linestyle="none")


@dataclass
class Scored:
    """One model's scores on one split: what every curve is drawn from."""

    name: str
    labels: np.ndarray
    scores: np.ndarray
    threshold: float

    @property
    def both_classes(self) -> bool:
        return len(np.unique(self.labels)) == 2


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _figure(size: tuple[float, float] = SIZE, cols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(1, cols)
    return fig, list(np.atleast_1d(axes))


def _not_defined(ax, what: str) -> None:
    """A curve that needs both classes, on a split with one: say so instead of drawing nonsense."""
    ax.text(
        0.5,
        0.5,
        f"{what} not defined:\nthis split has only one class",
        ha="center",
        va="center",
        transform=ax.transAxes,
    )
    ax.set_axis_off()


def _roc_on(ax, s: Scored, mark: bool = True, label: str | None = None) -> None:
    from sklearn.metrics import RocCurveDisplay

    m = classification_metrics(s.labels, s.scores, s.threshold)
    RocCurveDisplay.from_predictions(
        s.labels, s.scores, pos_label=1, name=label or s.name, ax=ax, plot_chance_level=mark
    )
    if mark:
        ax.plot(
            [1 - m["specificity"]],
            [m["sensitivity"]],
            **THRESHOLD_STYLE,
            label=f"threshold {s.threshold:.3f}: sens {m['sensitivity']:.2f}, spec {m['specificity']:.2f}",
        )
    else:
        ax.plot(
            [1 - m["specificity"]], [m["sensitivity"]], marker="o", color=ax.lines[-1].get_color(), linestyle="none"
        )
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("sensitivity (malignant recall)")


def _pr_on(ax, s: Scored, mark: bool = True, label: str | None = None) -> None:
    from sklearn.metrics import PrecisionRecallDisplay

    pred = s.scores >= s.threshold
    tp = int((pred & (s.labels == 1)).sum())
    recall = tp / max(1, int((s.labels == 1).sum()))
    precision = tp / max(1, int(pred.sum()))
    PrecisionRecallDisplay.from_predictions(
        s.labels, s.scores, pos_label=1, name=label or s.name, ax=ax, plot_chance_level=mark
    )
    if mark:
        ax.plot(
            [recall],
            [precision],
            **THRESHOLD_STYLE,
            label=f"threshold {s.threshold:.3f}: recall {recall:.2f}, precision {precision:.2f}",
        )
    else:
        ax.plot([recall], [precision], marker="o", color=ax.lines[-1].get_color(), linestyle="none")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (malignant)")


def roc_png(s: Scored, split: str) -> bytes:
    return _curve_png(s, _roc_on, "ROC", "lower right", f"ROC, {SPLIT_TITLES[split]} (n={len(s.labels)})")


def pr_png(s: Scored, split: str) -> bytes:
    return _curve_png(
        s, _pr_on, "Precision-recall", "lower left", f"Precision-recall (malignant), {SPLIT_TITLES[split]}"
    )


def _curve_png(s: Scored, draw, what: str, legend: str, title: str) -> bytes:
    fig, (ax,) = _figure()
    if s.both_classes:
        draw(ax, s)
        ax.legend(loc=legend, fontsize=8)
    else:
        _not_defined(ax, what)
    ax.set_title(title, fontsize=10)
    return png_bytes(fig)


def confusion_png(s: Scored, split: str) -> bytes:
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, (ax,) = _figure()
    ConfusionMatrixDisplay.from_predictions(
        s.labels,
        (s.scores >= s.threshold).astype(int),
        labels=[0, 1],
        display_labels=list(CLASSES),
        ax=ax,
        cmap="Blues",
        colorbar=False,
    )
    ax.set_title(
        f"Confusion matrix at threshold {s.threshold:.3f}\n{SPLIT_TITLES[split]} (n={len(s.labels)})", fontsize=10
    )
    return png_bytes(fig)


def calibration_png(s: Scored, split: str, bins: int = 10) -> bytes:
    from sklearn.calibration import CalibrationDisplay

    m = classification_metrics(s.labels, s.scores, s.threshold)
    fig, (ax,) = _figure()
    if s.both_classes:
        CalibrationDisplay.from_predictions(
            s.labels, s.scores, n_bins=bins, strategy="uniform", pos_label=1, name=s.name, ax=ax
        )
        ax.set_xlabel("mean predicted p(malignant)")
        ax.set_ylabel("fraction malignant")
        ax.legend(loc="upper left", fontsize=8)
    else:
        _not_defined(ax, "Calibration")
    ax.text(
        0.98,
        0.02,
        f"Brier {m['brier']:.3f}\nECE {m['ece']:.3f} ({bins} bins)",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=9,
        bbox=dict(boxstyle="round", facecolor="white", alpha=0.8),
    )
    ax.set_title(f"Calibration, {SPLIT_TITLES[split]} (n={len(s.labels)})", fontsize=10)
    return png_bytes(fig)


def training_curves_png(history: dict[str, Sequence[float]], name: str) -> bytes:
    """Loss and AUC (accuracy when there is no AUC) per epoch, training beside validation."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure((8.0, 3.6), cols=2)
    second = "auc" if "auc" in history else "accuracy"
    for ax, key in zip(axes, ("loss", second)):
        for prefix, label in (("", "training"), ("val_", "validation")):
            values = history.get(prefix + key) or []
            if values:
                ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{name}: {key}", fontsize=10)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return png_bytes(fig)


def risk_coverage_png(name: str, curves: dict[str, list[dict]], level: float, referral: dict | None = None) -> bytes:
    """Accuracy of the images the model decides against the share it refers as uncertain, one
    point per conformal coverage level (decision/evaluation.risk_coverage), per split; the
    chosen level is marked, and, where given, the operating point with out-of-scope refers too."""
    fig, (ax,) = _figure()
    for split, points in curves.items():
        pts = sorted((p for p in points if p["accuracy"] == p["accuracy"]), key=lambda p: p["refer_rate"])
        (line,) = ax.plot(
            [p["refer_rate"] for p in pts],
            [p["accuracy"] for p in pts],
            marker=".",
            label=SPLIT_TITLES[split].split(" (")[0],
        )
        chosen = [p for p in pts if abs(p["level"] - level) < 1e-9]
        if chosen:
            ax.plot(
                [chosen[0]["refer_rate"]], [chosen[0]["accuracy"]], **{**THRESHOLD_STYLE, "color": line.get_color()}
            )
        if referral and split in referral:
            r = referral[split]
            ax.plot(
                [r["refer_rate"]],
                [r["decided_accuracy"]],
                marker="*",
                markersize=12,
                color=line.get_color(),
                linestyle="none",
                label=f"operating point, {split} (with out-of-scope)",
            )
    ax.set_xlabel("share referred (uncertain)")
    ax.set_ylabel("accuracy of the decided images")
    ax.set_title(f"{name}: risk-coverage, coverage level {level:.2f} marked", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return png_bytes(fig)


def evaluation_pngs(
    name: str,
    threshold: float,
    history: dict,
    val_labels,
    val_scores,
    test_labels,
    test_scores,
    referral: dict | None = None,
    level: float | None = None,
) -> dict[str, bytes]:
    """Every per-model figure, keyed by its file name under the run's ``figures/`` artifacts."""
    out: dict[str, bytes] = {}
    if referral and referral.get("risk_coverage") and level is not None:
        out["risk_coverage.png"] = risk_coverage_png(name, referral["risk_coverage"], level, referral)
    for split, labels, scores in (("val", val_labels, val_scores), ("test", test_labels, test_scores)):
        s = Scored(name, np.asarray(labels).astype(int), np.asarray(scores, dtype=float).reshape(-1), threshold)
        out[f"{split}_roc.png"] = roc_png(s, split)
        out[f"{split}_pr.png"] = pr_png(s, split)
        out[f"{split}_confusion.png"] = confusion_png(s, split)
        out[f"{split}_calibration.png"] = calibration_png(s, split)
    if history:
        out["training_curves.png"] = training_curves_png(history, name)
    return out


def comparison_png(models: list[Scored], split: str, winner: str | None = None) -> bytes:
    """Every model's ROC (left) and precision-recall (right) curve on one split, each model's
    threshold as a dot on its curve; the winner is drawn thicker."""
    fig, (roc_ax, pr_ax) = _figure((10.0, 4.2), cols=2)
    # The winner last, so it is drawn on top of the others.
    drawable = sorted((m for m in models if m.both_classes), key=lambda m: m.name == winner)
    for m in drawable:
        label = f"{m.name} (winner)" if m.name == winner else m.name
        _roc_on(roc_ax, m, mark=False, label=label)
        _pr_on(pr_ax, m, mark=False, label=label)
        if m.name == winner:
            for ax in (roc_ax, pr_ax):
                ax.lines[-2].set_linewidth(2.8)
    if not drawable:
        _not_defined(roc_ax, "ROC")
        _not_defined(pr_ax, "Precision-recall")
    else:
        roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        roc_ax.legend(loc="lower right", fontsize=8)
        pr_ax.legend(loc="lower left", fontsize=8)
    roc_ax.set_title(f"ROC, {SPLIT_TITLES[split]}", fontsize=10)
    pr_ax.set_title(f"Precision-recall (malignant), {SPLIT_TITLES[split]}", fontsize=10)
    fig.suptitle("Dots: each model's decision threshold", fontsize=9)
    return png_bytes(fig)
