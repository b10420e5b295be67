"""The words of a selection: why the new version became ``@champion`` or why the champion stayed,
how the two were compared, and the table of this run's models. One text for the run summary,
the dashboard and the model card."""

from __future__ import annotations

from components.core.registry.selection import CHAMPION, PROMOTION_RULE, rank_key


def comparison_lines(previous: dict | None) -> list[str]:
    """How the newcomer was compared with the champion, for the run summary."""
    if not previous:
        return []  # nothing was compared; decision() says there was no champion
    c = previous["comparison"]
    where = (
        f"on the {c['compared_on']} of {c['validation_images']} validation images it never trained on"
        if c["champion_training_set"] == "recorded"
        else f"on all {c['validation_images']} validation images (its training set was not recorded)"
    )
    if not c["decided"]:
        return ["", f"Champion version {previous['version']} compared {where}: {c['reason']}."]
    return [
        "",
        f"Champion version {previous['version']} compared {where}: accuracy "
        f"{c['theirs']['accuracy']:.3f} (champion) vs {c['mine']['accuracy']:.3f} (new), AUC "
        f"{c['theirs']['auc']:.3f} vs {c['mine']['auc']:.3f}.",
    ]


def decision(reg) -> str:
    """One sentence: why the new version became @champion, or why the champion stayed."""
    previous = reg.previous_champion
    if getattr(reg, "proposed", False):
        against = (
            f"it is at least as good as champion version {previous['version']} on the validation images "
            "the champion never trained on"
            if previous
            else "there is no champion yet"
        )
        return (
            f"Version {reg.version} is @{reg.alias}, waiting for a person's approval: {against}; "
            "this pipeline requires approval before a model becomes @champion"
        )
    if reg.alias == CHAMPION and not previous:
        return (
            f"Version {reg.version} is @champion: there was no champion before it"
            if reg.champion_changed
            else f"Version {reg.version} was already @champion (a rerun)"
        )
    if reg.champion_changed:
        return (
            f"Version {reg.version} became @champion: it is at least as good as champion version "
            f"{previous['version']} on the validation images the champion never trained on"
        )
    comparison = (previous or {}).get("comparison", {})
    why = (
        comparison.get("reason")
        if not comparison.get("decided", True)
        else ("the champion is better on the validation images it never trained on")
    )
    return f"Champion version {reg.champion_version} stayed and version {reg.version} is @{reg.alias}: {why}"


def models_table(results: list, winner) -> list[str]:
    """This run's models, best first (validation decides; test is reported), the winner marked."""
    rows = [
        "| model | val acc | val AUC | test acc | test AUC | sensitivity | specificity | params | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=rank_key):
        mark = " (winner)" if (r.name, r.run_id) == (winner.name, winner.run_id) else ""
        rows.append(
            f"| {r.name}{mark} | {r.val['accuracy']:.3f} | {r.val['auc']:.3f} | "
            f"{r.test['accuracy']:.3f} | {r.test['auc']:.3f} | {r.test['sensitivity']:.3f} | "
            f"{r.test['specificity']:.3f} | {r.params:,} | {r.seconds:.0f} |"
        )
    return rows


def summary_markdown(results: list, winner, reg) -> str:
    """The selection step's Markdown summary (a KFP output, printed in its log)."""
    return "\n".join(
        [
            *models_table(results, winner),
            "",
            f"Registered **{reg.name}** version **{reg.version}** as `@{reg.alias}`; "
            + (f"champion is version {reg.champion_version}" if reg.champion_version else "there is no champion")
            + f"{' (changed)' if reg.champion_changed else ' (unchanged)'}. {decision(reg)}.",
            "",
            "Selection uses validation data only; test figures are reported, never used to choose.",
            PROMOTION_RULE,
            *comparison_lines(reg.previous_champion),
        ]
    )
