"""The worklist a clinician opens after a scoring run: one self-contained HTML page.

The counts first, then the images to look at first (referred, then malignant, highest
p(malignant) first; with a thumbnail, p (none for an out-of-scope image, the prediction set for an
uncertain one), the decision and the reason), then the rest, then the
files that could not be scored and the monitoring verdicts. Thumbnails are inlined (base64 JPEG),
so the page opens from KFP's artifact view or MLflow without reaching the bucket.
"""

from __future__ import annotations

import base64
import html
import io

from components.core.data import storage
from components.core.data.images import BadImage, decode_image

THUMBNAIL = 96
MAX_THUMBNAILS = 300  # a very long worklist keeps its rows, the rest without a picture

REASONS = {
    "out_of_scope": "does not look like a dermoscopic image of a lesion",
    "uncertain": "the model cannot tell with the confidence it was calibrated for",
}


def order(rows: list[dict]) -> list[dict]:
    """Referred first, then malignant, then benign; within each, highest p(malignant) first."""
    rank = {"refer": 0, "malignant": 1, "benign": 2}
    return sorted(
        (r for r in rows if not r["error"]),
        key=lambda r: (rank.get(r["decision"], 3), -(r["p_malignant"] or 0.0), r["key"]),
    )


def thumbnail(uri: str) -> str:
    """A data: URI of a small JPEG of the image, or "" when it cannot be read again."""
    from PIL import Image

    try:
        pixels = decode_image(storage.read_bytes(uri), THUMBNAIL)
    except (BadImage, storage.StorageError, OSError):
        return ""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _signal_row(s: dict) -> str:
    p = s.get("p_value")
    detail = f"p = {p:.3g} (alpha {s['alpha']})" if isinstance(p, float) and p == p else ""
    return (
        f"<tr><td>{html.escape(s['signal'])}</td><td class='v-{html.escape(s['verdict'].replace(' ', '-'))}'>"
        f"{html.escape(s['verdict'])}</td><td>{s['n']}</td><td>{html.escape(detail)}</td>"
        f"<td>{html.escape(s.get('test', ''))}</td></tr>"
    )


def shown_result(row: dict) -> str:
    """What the worklist shows in place of a probability, for a person to read. Referral exists to
    withhold a confident number: an out-of-scope image shows none ("-"), an uncertain one its
    prediction set; a decided image its p(malignant). The Parquet rows keep every field."""
    if row["decision"] == "refer" and row["refer_reason"] == "out_of_scope":
        return "-"
    if row["decision"] == "refer":
        classes = row.get("prediction_set")  # None: a row written before the set was kept
        if classes is None:
            return "uncertain"
        return "could be: " + (" or ".join(classes) if len(classes) else "neither class")
    return f"{row['p_malignant']:.3f}"


def render(rows: list[dict], summary: dict, data_uri: str, title: str = "Scoring worklist") -> str:
    e = html.escape
    listed = order(rows)
    items = []
    for i, r in enumerate(listed):
        thumb = thumbnail(storage.join(data_uri, r["key"])) if i < MAX_THUMBNAILS and data_uri else ""
        img = f"<img src='{thumb}' alt='' width='{THUMBNAIL}'>" if thumb else ""
        reason = REASONS.get(r["refer_reason"] or "", "")
        items.append(
            f"<tr class='d-{e(r['decision'])}'><td>{img}</td><td>{e(r['key'])}</td>"
            f"<td>{e(shown_result(r))}</td><td><b>{e(r['decision'])}</b></td><td>{e(reason)}</td></tr>"
        )
    errors = "".join(f"<tr><td>{e(r['key'])}</td><td>{e(r['error'])}</td></tr>" for r in rows if r["error"])
    counts = (
        f"{summary['scored']} scored, {summary['referred']} referred, {summary['malignant']} malignant, "
        f"{summary['errors']} could not be scored, {summary['already_scored']} already scored before"
    )
    retrain = (
        "<p class='alert'>Retraining recommended: " + e("; ".join(summary["retrain_reasons"])) + "</p>"
        if summary["retrain_recommended"]
        else ""
    ) + (
        "<p class='alert'>A person should look (the outputs moved, the inputs did not): "
        + e("; ".join(summary["review_reasons"]))
        + "</p>"
        if summary.get("review_recommended")
        else ""
    )
    labels = summary.get("labels")
    label_part = (
        (
            "<h2>Labelled images</h2><ul>"
            + "".join(
                f"<li>{e(k)}: {v:.3f}</li>"
                if isinstance(v, float) and v == v and not k.startswith("labelled")
                else f"<li>{e(k)}: {v:g}</li>"
                for k, v in labels.items()
            )
            + "</ul>"
        )
        if labels
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title><style>
body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}} td,th{{border-bottom:1px solid #ddd;
padding:4px 8px;text-align:left}} .d-refer{{background:#fff4d6}} .d-malignant{{background:#fde2e2}}
.v-drift,.alert{{color:#a40000;font-weight:bold}}</style></head><body>
<h1>{e(title)}</h1><p>{e(counts)}.</p>{retrain}
<p>Referred and malignant images first. A decision is the model's, for a clinician to confirm; a referred image
gets no result.</p>
<table><tr><th></th><th>image</th><th>p(malignant), or what it could be</th><th>decision</th><th>why referred</th></tr>
{"".join(items)}</table>
<h2>Files that could not be scored</h2>
{f"<table><tr><th>file</th><th>why</th></tr>{errors}</table>" if errors else "<p>None.</p>"}
<h2>Monitoring</h2>
<p>Input: do the images look like the training images (ImageNet features, which do not encode the diagnosis)?
Prediction and decision: do the model's answers look like its answers on validation? A change in the mix of
lesions moves only the latter; a new camera or lighting moves the input signal.</p>
<table><tr><th>signal</th><th>verdict</th><th>images</th><th>test result</th><th>test</th></tr>
{"".join(_signal_row(s) for s in summary["signals"])}</table>{label_part}
</body></html>"""
