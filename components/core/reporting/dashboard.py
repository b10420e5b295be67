"""The selection step's page in the Kubeflow Pipelines dashboard (a KFP ``HTML`` output).

One self-contained HTML file: every model's ROC and precision-recall curves on validation and
on test (PNGs embedded as ``data:`` URIs, since the dashboard shows the file in a sandboxed frame
with nothing else to fetch), the table of models, the winner, why it won or why the champion
stayed, its decision threshold, and its model card. No script, no external resource.
"""

from __future__ import annotations

import base64
import html

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; margin: 1.25rem; max-width: 1100px; }
h1 { font-size: 1.35rem; margin: 0 0 .5rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
.decision { background: #eef3ff; border: 1px solid #9db4f0; border-radius: 8px; padding: .75rem 1rem; }
.notice { background: #fff4d6; border: 1px solid #e0b84c; border-radius: 8px; padding: .5rem 1rem; margin: .75rem 0; }
table { border-collapse: collapse; font-size: .9rem; } th, td { border: 1px solid #d1d5db; padding: .3rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } tr.winner { font-weight: 700; background: #f0fdf4; }
figure { margin: .75rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #e5e7eb; }
figcaption { font-size: .85rem; color: #4b5563; }
pre { white-space: pre-wrap; background: #f9fafb; border: 1px solid #e5e7eb; padding: .75rem; font-size: .85rem; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _models_table(results: list, winner) -> str:
    from components.core.registry.selection import rank_key

    head = (
        "<tr><th>model</th><th>val acc</th><th>val AUC</th><th>test acc</th><th>test AUC</th>"
        "<th>sensitivity</th><th>specificity</th><th>threshold</th><th>test refer rate</th>"
        "<th>test decided acc</th><th>test decided recall</th><th>params</th><th>seconds</th></tr>"
    )
    rows = []
    for r in sorted(results, key=rank_key):
        won = (r.name, r.run_id) == (winner.name, winner.run_id)
        cells = [
            f"{html.escape(r.name)}{' (winner)' if won else ''}",
            *(
                f"{getattr(r, s)[k]:.3f}"
                for s, k in (
                    ("val", "accuracy"),
                    ("val", "auc"),
                    ("test", "accuracy"),
                    ("test", "auc"),
                    ("test", "sensitivity"),
                    ("test", "specificity"),
                )
            ),
            f"{r.threshold:.3f}",
            *_referral_cells(r),
            f"{r.params:,}",
            f"{r.seconds:.0f}",
        ]
        attr = ' class="winner"' if won else ""
        rows.append(f"<tr{attr}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _referral_cells(r) -> list[str]:
    """How the model's decision policy did on test (model_card's "When the model refers" has all)."""
    test = (getattr(r, "referral", None) or {}).get("test") or {}
    return [
        f"{test[k]:.3f}" if isinstance(test.get(k), float) and test[k] == test[k] else "n/a"
        for k in ("refer_rate", "decided_accuracy", "decided_malignant_recall")
    ]


def _approval_line(reg) -> str:
    if getattr(reg, "proposed", False):
        return (
            f"Waiting for a person's approval: skin-cancer approve {reg.version} --reason ... "
            "(the model card below shows the evidence's digest and the history)."
        )
    return "This pipeline did not require approval; the history is in the model card below."


def render(
    results: list,
    winner,
    reg,
    comparisons: dict[str, bytes],
    card: str,
    missing_scores: list[str] = (),
    subgroups_png: bytes | None = None,
) -> str:
    """The page. ``comparisons``: PNG by split (``val``, ``test``) from figures.comparison_png;
    ``missing_scores``: models whose curves could not be drawn, each with why; ``subgroups_png``:
    the winner's malignant recall per skin tone and acquisition group (evaluation/subgroups.py).
    The card (embedded whole) holds the approval state and history and "Who it was tested on"."""
    from components.core.registry.selection import PROMOTION_RULE
    from components.core.reporting import promotion_report

    figs = []
    for split, caption in (
        ("val", "Validation: what the selection and the threshold were decided on."),
        ("test", "Test: reported only, never used to choose a model or a threshold."),
    ):
        if split in comparisons:
            figs.append(
                f'<figure><img id="compare-{split}" alt="ROC and precision-recall curves, {split}" '
                f'src="{data_uri(comparisons[split])}"><figcaption>{caption} Each dot is that model\'s '
                "decision threshold.</figcaption></figure>"
            )
    if missing_scores:
        figs.append(f"<p>No curves for {html.escape('; '.join(missing_scores))}.</p>")
    if subgroups_png:
        figs.append(
            f'<figure><img id="subgroups" alt="malignant recall per subgroup" src="{data_uri(subgroups_png)}">'
            "<figcaption>The winner on test, per estimated skin tone (ITA) and acquisition group, with bootstrap "
            '95 % intervals; groups under 30 images are too few to judge (the card\'s "Who it was tested on").'
            "</figcaption></figure>"
        )
    comparison = " ".join(line for line in promotion_report.comparison_lines(reg.previous_champion) if line)
    body = f"""
<h1>Selection: {html.escape(reg.name)} version {html.escape(str(reg.version))} (@{html.escape(reg.alias)})</h1>
<div class="decision" id="decision">
<p><strong>Winner of this run: {html.escape(winner.name)}</strong> (best validation accuracy; ties: AUC,
then the smaller model). Decision threshold <strong id="threshold">{winner.threshold:.4f}</strong>
(the highest whose validation malignant recall reaches the target plus one standard error).</p>
<p id="why">{html.escape(promotion_report.decision(reg))}. {html.escape(comparison)}</p>
<p id="approval-state">{html.escape(_approval_line(reg))}</p>
<p>{html.escape(PROMOTION_RULE)}</p>
</div>
<div class="notice">Decision support only, not a diagnosis.</div>
<h2>Models</h2>
{_models_table(results, winner)}
<h2>Curves</h2>
{"".join(figs)}
<h2>Model card of version {html.escape(str(reg.version))}</h2>
<pre id="model-card">{html.escape(card)}</pre>
"""
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Selection: '
        f"{html.escape(reg.name)} v{html.escape(str(reg.version))}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
