"""Evidence per subgroup: how the model does by skin tone, image size and brightness, each with a
bootstrap 95 % interval, and the gate that fails a model whose malignant recall drops in a group.

Attributes come from the images themselves (nothing about the patient is known):

- ``skin_tone_ita``: the Individual Typology Angle, ``degrees(arctan2(L* - 50, b*))``, of the skin
  around the lesion (:func:`skin_lab`), grouped by the usual thresholds (:func:`ita_group`). ITA
  measures the colour of the skin under the image's own lighting; it is not the Fitzpatrick type.
- ``image_size``: the original file's width x height (the manifest's source entry), since the
  acquisition device shows in it;
- ``brightness``: the tertile of the image's mean grey level within the split itself.

Metrics by group come from fairlearn's ``MetricFrame`` with its bootstrap (``n_boot`` resamples
of the whole split, the 2.5 and 97.5 % quantiles); every group is listed with its n, one under
:data:`MIN_GROUP` images is marked "too few to judge", and an AUC is never computed on one class.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from components.core.decision.image_checks import LUMA

# Bootstrap resamples in production. Fairlearn's bootstrap is pandas work per resample: about 25 ms
# per resample and attribute at 600 images on 2 cores (2026-12-08), so 100 keeps the train step's
# evidence near 5 s where 1000 takes over a minute. Measured on 600 real images: the interval ends
# from 100 resamples lie a median 0.008 (at most 0.036) from those of 1000.
N_BOOT = 100
SEED = 0
MIN_GROUP = 30  # below this many images a group's figures are listed, never judged
RECALL_GAP = 0.10  # a judged group's recall may sit at most this far below the overall recall
CI_QUANTILES = [0.025, 0.975]
BATCH = 64  # images read from a split at once

ITA_GROUPS = ("very light", "light", "intermediate", "tan", "brown", "dark")
# Lower limits, lightest first. A boundary angle belongs to the DARKER group (each group is
# (lower, upper]): 55 is light, 41 intermediate, 28 tan, 10 brown and -30 dark.
_ITA_LIMITS = ((55.0, "very light"), (41.0, "light"), (28.0, "intermediate"), (10.0, "tan"), (-30.0, "brown"))
BRIGHTNESS_GROUPS = ("dark third", "middle third", "bright third")
ATTRIBUTE_TITLES = {
    "skin_tone_ita": "Skin tone (ITA of the skin around the lesion)",
    "image_size": "Original image size (width × height)",
    "brightness": "Brightness (tertile of the mean grey level in this split)",
}
ITA_NOT_FITZPATRICK = (
    "ITA measures the colour of the skin around the lesion under the image's own lighting; "
    "it is not the Fitzpatrick skin type."
)
TOO_FEW = "too few to judge"
ENOUGH = "enough to judge"
METRICS = ("accuracy", "malignant_recall", "specificity", "auc", "referral_rate")
METRIC_TITLES = {
    "accuracy": "accuracy",
    "malignant_recall": "malignant recall",
    "specificity": "specificity",
    "auc": "AUC",
    "referral_rate": "referral rate",
}

# --- colour ---------------------------------------------------------------------------------------

# Linear sRGB to CIE XYZ (IEC 61966-2-1 primaries, D65) and the D65 2-degree white, as published and
# as scikit-image uses them. Published to six and five digits, they disagree by about 1e-5: sRGB
# white comes out at a* = -0.002, b* = 0.005 instead of 0, far below anything ITA can tell apart.
_RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_TO_RELATIVE_XYZ = (_RGB_TO_XYZ / _WHITE[:, None]).T  # linear RGB rows -> X/Xn, Y/Yn, Z/Zn
_EPS = (6 / 29) ** 3  # CIE 1976: at or below it f(t) is linear


def _linear(c: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 decoding of sRGB values in [0, 1] to linear light."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


_LINEAR_U8 = _linear(np.arange(256) / 255.0)  # uint8 input: a table lookup instead of a power


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE 1976 L*, a*, b* (D65) of sRGB values in 0..255 (uint8 or float), shape (..., 3)."""
    rgb = np.asarray(rgb)
    lin = _LINEAR_U8[rgb] if rgb.dtype == np.uint8 else _linear(rgb.astype(np.float64) / 255.0)
    f = lin @ _TO_RELATIVE_XYZ
    small = f <= _EPS
    t_small = f[small]
    np.cbrt(f, out=f)
    f[small] = t_small / (3 * (6 / 29) ** 2) + 4 / 29
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of 1-D ``values``: the histogram edge that maximises the between-class
    variance; the low class is ``values < threshold``. Constant values give that value."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return math.nan
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1]  # pixels in bins 0..k, for a cut after bin k
    w1 = values.size - w0
    s0 = np.cumsum(hist * centres)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (float((hist * centres).sum()) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


# --- skin tone ------------------------------------------------------------------------------------

BLACK_L = 15.0  # L* below this is the dermoscope's vignette (black corners), not skin
MIN_SKIN = 0.05  # the share of the image the skin mask must keep, else fall back (see skin_lab)
TRIM = (5.0, 95.0)  # percentiles of the skin's L* kept: hairs, glare and mask leaks left out
# Every second pixel each way: a quarter of the work for medians of thousands of pixels (on 200 real
# test images at 192 px: ITA within 1.3 degrees of all pixels', median 0.04, no group changed).
STRIDE = 2


def skin_lab(pixels: np.ndarray) -> tuple[float, float]:
    """Median L* and b* of the skin around the lesion in one (H, W, 3) uint8 image.

    The lesion is the darker class of Otsu's threshold on L* (over the non-black pixels), the
    vignette is L* < :data:`BLACK_L`, and of what is left the skin pixels between the 5th and
    95th percentile of L* are kept. Fallback: when the skin mask keeps under :data:`MIN_SKIN` of
    the pixels (a lesion that fills the frame), every non-black pixel is used, and when there are
    too few of those, every pixel. An image with no lesion is still split by Otsu: its lighter
    half is taken as the skin. Every :data:`STRIDE`-th pixel each way is read."""
    lab = srgb_to_lab(np.asarray(pixels)[::STRIDE, ::STRIDE]).reshape(-1, 3)
    L = lab[:, 0]
    not_black = L >= BLACK_L
    skin = not_black & (L >= otsu_threshold(L[not_black])) if not_black.any() else not_black
    if skin.sum() < MIN_SKIN * L.size:
        skin = not_black if not_black.sum() >= MIN_SKIN * L.size else np.ones_like(not_black)
    low, high = np.percentile(L[skin], TRIM)
    kept = skin & (L >= low) & (L <= high)
    if not kept.any():  # a few distinct values: the interpolated percentiles can fall between them
        kept = skin
    return float(np.median(L[kept])), float(np.median(lab[kept, 2]))


def ita(L: float, b: float) -> float:
    """The Individual Typology Angle in degrees; arctan2 keeps b* <= 0 finite."""
    return float(np.degrees(np.arctan2(L - 50.0, b)))


def ita_group(angle: float) -> str:
    """The ITA group of ``angle`` (one of :data:`ITA_GROUPS`; a boundary goes to the darker group)."""
    for lower, name in _ITA_LIMITS:
        if angle > lower:
            return name
    return "dark"


# --- attributes of a split's images ---------------------------------------------------------------


@dataclass
class Measures:
    """What is measured on each image, in split order: its ITA (degrees) and mean grey level."""

    ita: np.ndarray
    grey: np.ndarray


def measure(pixels_batches: Iterable[np.ndarray]) -> Measures:
    """ITA and mean grey level (ITU-R BT.601 luma) of every image of ``pixels_batches`` ((n, H, W, 3) uint8)."""
    angles: list[float] = []
    grey: list[float] = []
    luma = np.array(LUMA)
    for batch in pixels_batches:
        for pixels in batch:
            angles.append(ita(*skin_lab(pixels)))
            grey.append(float(pixels.reshape(-1, 3).mean(axis=0) @ luma))
    return Measures(np.asarray(angles, dtype=np.float64), np.asarray(grey, dtype=np.float64))


def size_group(source: dict) -> str:
    """The original file's size as "W×H", from a manifest source entry; "unknown" for an older manifest."""
    width, height = source.get("width"), source.get("height")
    return f"{width}×{height}" if width and height else "unknown"


def brightness_groups(grey: np.ndarray) -> list[str]:
    """Tertiles of the split's own mean grey levels (boundaries: its 1/3 and 2/3 quantiles)."""
    if grey.size == 0:
        return []
    edges = np.quantile(grey, [1 / 3, 2 / 3])
    return [BRIGHTNESS_GROUPS[i] for i in np.digitize(grey, edges)]


def attributes_of(measures: Measures, sources: list[dict]) -> dict[str, list[str]]:
    """The group of each image per attribute, from its measures and its manifest source entry."""
    if len(sources) != measures.ita.size:
        raise ValueError(f"{len(sources)} source entries for {measures.ita.size} images")
    return {
        "skin_tone_ita": [ita_group(a) for a in measures.ita],
        "image_size": [size_group(s) for s in sources],
        "brightness": brightness_groups(measures.grey),
    }


def image_attributes(pixels_batches: Iterable[np.ndarray], sources: list[dict]) -> dict[str, list[str]]:
    """Skin tone (ITA group), original size and brightness tertile of every image, in split order."""
    return attributes_of(measure(pixels_batches), sources)


# --- metrics by group -----------------------------------------------------------------------------
# Every metric returns NaN where a resample leaves it undefined (one class, no malignant image),
# so a bootstrap sample never raises. A group's quantiles skip those samples (fairlearn's
# nanquantile); the overall ones do not (its plain quantile), so there the interval is then None.


def _accuracy(y_true, y_pred) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else math.nan


def _recall(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    positive = y_true == 1
    return float(np.mean(y_pred[positive] == 1)) if positive.any() else math.nan


def _specificity(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    negative = y_true == 0
    return float(np.mean(y_pred[negative] == 0)) if negative.any() else math.nan


def _auc(y_true, y_pred, scores) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half), NaN with one class. The same
    number as sklearn's roc_auc_score, without the input checks that every resample and group
    would pay for."""
    from scipy.stats import rankdata

    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    n_pos = int((y_true == 1).sum())
    n_neg = y_true.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _referral_rate(y_true, y_pred, referred) -> float:
    return float(np.mean(np.asarray(referred, dtype=bool))) if len(y_true) else math.nan


def _number(v) -> float | None:
    """JSON-ready: NaN (undefined) becomes None."""
    return None if v is None or not np.isfinite(v) else float(v)


@dataclass
class _Scored:
    labels: np.ndarray
    pred: np.ndarray
    p: np.ndarray
    referred: np.ndarray | None


def _frame(s: _Scored, feature: np.ndarray, n_boot: int, seed: int):
    from fairlearn.metrics import MetricFrame

    metrics = {"accuracy": _accuracy, "malignant_recall": _recall, "specificity": _specificity, "auc": _auc}
    params = {"auc": {"scores": s.p}}
    if s.referred is not None:
        metrics["referral_rate"] = _referral_rate
        params["referral_rate"] = {"referred": s.referred}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanquantile of a group undefined in every resample
        return MetricFrame(
            metrics=metrics,
            y_true=s.labels,
            y_pred=s.pred,
            sensitive_features=feature,
            sample_params=params,
            n_boot=n_boot,
            ci_quantiles=CI_QUANTILES,
            random_state=seed,
        )


def _cells(frame, group: str | None = None) -> tuple:
    """(value, low, high), each a Series by metric: the frame's overall figures, or one group's
    (reindexed: a group that no resample drew has no interval, NaN)."""
    if group is None:
        return (frame.overall, *frame.overall_ci)
    return tuple(t.reindex([group]).iloc[0] for t in (frame.by_group, *frame.by_group_ci))


def _undefined_note(metric: str, n_benign: int, n_malignant: int, has_referred: bool) -> str | None:
    if metric == "referral_rate" and not has_referred:
        return "not available: the model has no decision policy"
    if n_benign + n_malignant == 0:
        return "no images"
    if metric == "auc" and (n_benign == 0 or n_malignant == 0):
        return "undefined: one class"
    if metric == "malignant_recall" and n_malignant == 0:
        return "undefined: no malignant images"
    if metric == "specificity" and n_benign == 0:
        return "undefined: no benign images"
    return None


def _row(group: str, labels: np.ndarray, cells: tuple | None, has_referred: bool) -> dict:
    """One group's counts and metrics; ``cells``: its (value, low, high) from :func:`_cells`, None
    for a group with no image. A figure is None, with a note, where it is undefined."""
    n_malignant = int((labels == 1).sum())
    n_benign = int(labels.size - n_malignant)
    row = {
        "group": group,
        "n": int(labels.size),
        "n_benign": n_benign,
        "n_malignant": n_malignant,
        "status": ENOUGH if labels.size >= MIN_GROUP else TOO_FEW,
        "metrics": {},
    }
    for metric in METRICS:
        note = _undefined_note(metric, n_benign, n_malignant, has_referred)
        value, low, high = (None, None, None) if note or cells is None else (_number(c[metric]) for c in cells)
        row["metrics"][metric] = {"value": value, "low": low, "high": high, **({"note": note} if note else {})}
    return row


def _group_order(attribute: str, feature: np.ndarray) -> list[str]:
    """Known groups in their natural order (every ITA and brightness group, even with no image:
    an empty group is evidence too), then any other, the most frequent first."""
    known = {"skin_tone_ita": ITA_GROUPS, "brightness": BRIGHTNESS_GROUPS}.get(attribute, ())
    counts = Counter(feature.tolist())
    others = sorted((g for g in counts if g not in known), key=lambda g: (-counts[g], g))
    return [*known, *others]


def subgroup_report(
    labels: np.ndarray,
    p: np.ndarray,
    threshold: float,
    referred: np.ndarray | None,
    attributes: dict[str, list[str]],
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> dict:
    """Counts and metrics (value and bootstrap 95 % interval) overall and for every group of every
    attribute; JSON-ready (undefined figures are None, with a note). ``p >= threshold`` is
    malignant; ``referred`` (True where the decision policy referred the image) may be None."""
    import fairlearn

    labels = np.asarray(labels).astype(int).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if referred is not None:
        referred = np.asarray(referred, dtype=bool).reshape(-1)
    features = {a: np.asarray(list(f), dtype=object) for a, f in attributes.items()}
    for name, values in {"scores": p, "referred": referred, **features}.items():
        if values is not None and len(values) != labels.size:
            raise ValueError(f"{name}: {len(values)} values for {labels.size} images")
    s = _Scored(labels, (p >= threshold).astype(int), p, referred)
    # One MetricFrame per attribute with two groups or more. Each resamples the whole split with
    # the same seed, so the same resamples: every frame's overall figures are the same numbers, and
    # an attribute with one group (every image 224x224) is exactly those. Fairlearn's bootstrap
    # costs about 25 ms per resample and frame at 600 images here, so no frame is computed twice.
    frames = {a: _frame(s, f, n_boot, seed) for a, f in features.items() if len(set(f.tolist())) > 1}
    base = next(iter(frames.values()), None)
    if base is None and labels.size:
        base = _frame(s, np.full(labels.size, "all images", dtype=object), n_boot, seed)
    overall = _cells(base) if base is not None else None
    has_referred = referred is not None
    report = {
        "method": {
            "library": f"fairlearn {fairlearn.__version__} MetricFrame",
            "n_boot": int(n_boot),
            "seed": int(seed),
            "ci_quantiles": list(CI_QUANTILES),
            "min_group": MIN_GROUP,
            "threshold": float(threshold),
            "malignant_when": "p >= threshold",
        },
        "overall": _row("all images", labels, overall, has_referred),
        "attributes": {},
    }
    for attribute, feature in features.items():
        rows = []
        for group in _group_order(attribute, feature):
            mask = feature == group
            cells = None
            if mask.any():
                cells = _cells(frames[attribute], group) if attribute in frames else overall
            rows.append(_row(group, labels[mask], cells, has_referred))
        report["attributes"][attribute] = rows
    return report


# --- the gate -------------------------------------------------------------------------------------


def subgroup_recall_gate(report: dict, recall_floor: float | None) -> dict:
    """The "subgroup_recall" gate: fails when a group of at least :data:`MIN_GROUP` images has its malignant
    recall's upper bound below ``recall_floor`` (None: not checked), or its recall more than
    :data:`RECALL_GAP` below the overall recall. Groups under MIN_GROUP and groups without a
    malignant image cannot fail it."""
    overall = report["overall"]["metrics"]["malignant_recall"]["value"]
    failures, judged, too_few, no_malignant = [], 0, [], []
    for attribute, rows in report["attributes"].items():
        for row in rows:
            name = f"{attribute}={row['group']}"
            if row["n"] < MIN_GROUP:
                if row["n"]:
                    too_few.append(name)
                continue
            recall = row["metrics"]["malignant_recall"]
            if row["n_malignant"] == 0 or recall["value"] is None:
                no_malignant.append(name)
                continue
            judged += 1
            why = []
            if recall_floor is not None and recall["high"] is not None and recall["high"] < recall_floor:
                why.append(f"upper bound {recall['high']:.3f} below the recall floor {recall_floor:.3f}")
            if overall is not None and recall["value"] < overall - RECALL_GAP:
                why.append(f"recall {recall['value']:.3f} more than {RECALL_GAP:.2f} below the overall {overall:.3f}")
            if why:
                failures.append(
                    {
                        "attribute": attribute,
                        "group": row["group"],
                        "recall": recall["value"],
                        "high": recall["high"],
                        "why": "; ".join(why),
                    }
                )
    floor = "no recall floor" if recall_floor is None else f"recall floor {recall_floor:.3f}"
    overall_text = "undefined" if overall is None else f"{overall:.3f}"
    parts = [f"{judged} group(s) of at least {MIN_GROUP} images judged against the overall recall {overall_text}"]
    parts[0] += f" and the {floor}" if recall_floor is not None else f" ({floor})"
    if failures:
        parts.append("Failed: " + "; ".join(f"{f['attribute']}={f['group']}: {f['why']}" for f in failures))
    if too_few:
        parts.append(f"Too few to judge (< {MIN_GROUP} images): {', '.join(too_few)}")
    if no_malignant:
        parts.append(f"No malignant image, so recall cannot fail: {', '.join(no_malignant)}")
    return {
        "name": "subgroup_recall",
        "passed": not failures,
        "detail": ". ".join(parts),
        "failures": failures,
        "recall_floor": recall_floor,
    }


# --- what people read -----------------------------------------------------------------------------


def _cell(m: dict) -> str:
    if m["value"] is None:
        return m.get("note", "undefined")
    if m["low"] is None or m["high"] is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} [{m['low']:.3f}–{m['high']:.3f}]"


def _table_rows(rows: list[dict]) -> list[str]:
    head = ["group", "n (benign/malignant)", *(METRIC_TITLES[m] for m in METRICS), "status"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["group"], f"{row['n']} ({row['n_benign']}/{row['n_malignant']})"]
        cells += [_cell(row["metrics"][m]) for m in METRICS]
        out.append("| " + " | ".join([*cells, row["status"]]) + " |")
    return out


def markdown_table(report: dict) -> str:
    """The model card's "Who it was tested on": one table per attribute (figures with their 95 %
    bootstrap interval), what ITA is not, and the gate's result when the report holds one."""
    method = report["method"]
    lines = [
        f"Test split, {report['overall']['n']} images. Brackets: 95 % bootstrap interval "
        f"({method['library']}, {method['n_boot']} resamples, seed {method['seed']}). "
        f"A group under {MIN_GROUP} images is listed but {TOO_FEW}.",
        "",
        "**All images**",
        "",
        *_table_rows([report["overall"]]),
    ]
    for attribute, rows in report["attributes"].items():
        lines += ["", f"**{ATTRIBUTE_TITLES.get(attribute, attribute)}**", "", *_table_rows(rows)]
    lines += ["", ITA_NOT_FITZPATRICK]
    gate = report.get("gate")
    if gate:
        lines += ["", f"Gate `{gate['name']}`: {'passed' if gate['passed'] else 'FAILED'}. {gate['detail']}."]
    return "\n".join(lines) + "\n"


def subgroups_png(report: dict) -> bytes:
    """Malignant recall per group with its 95 % interval, one panel per attribute, the overall
    recall as a dashed line; groups under MIN_GROUP drawn hollow."""
    from matplotlib.figure import Figure

    from components.core.evaluation.figures import png_bytes  # sets the Agg backend

    attributes = list(report["attributes"].items())
    overall = report["overall"]["metrics"]["malignant_recall"]["value"]
    fig = Figure(figsize=(8.0, 2.6 * max(1, len(attributes))), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(max(1, len(attributes)), 1)))
    for ax, (attribute, rows) in zip(axes, attributes):
        for x, row in enumerate(rows):
            m = row["metrics"]["malignant_recall"]
            if m["value"] is None:
                ax.text(x, 0.5, m.get("note", "undefined").replace(": ", ":\n"), ha="center", va="center", fontsize=7)
                continue
            judged = row["n"] >= MIN_GROUP
            low, high = (m["low"], m["high"]) if m["low"] is not None else (m["value"], m["value"])
            ax.errorbar(
                [x],
                [m["value"]],
                yerr=[[m["value"] - low], [high - m["value"]]],
                fmt="o",
                color="#1f77b4" if judged else "grey",
                markerfacecolor="#1f77b4" if judged else "white",
                capsize=4,
            )
        if overall is not None:
            ax.axhline(overall, linestyle="--", color="#d62728", linewidth=1, label=f"overall {overall:.2f}")
            ax.legend(fontsize=7, loc="best")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([f"{r['group']}\nn={r['n']} ({r['n_malignant']} mal.)" for r in rows], fontsize=7)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("malignant recall", fontsize=8)
        ax.set_title(ATTRIBUTE_TITLES.get(attribute, attribute), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Malignant recall per group, 95 % bootstrap interval; hollow: < {MIN_GROUP} images", fontsize=9)
    return png_bytes(fig)
