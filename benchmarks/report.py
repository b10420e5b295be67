"""The report: targets and whether they are met, ``bench.json``, the ``bench.md`` table, and the
table between the bench markers in a Markdown page (docs/benchmarks.md, ``--readme``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.data import FULL_DATA_IMAGES
from benchmarks.machine import machine_line

GPU_NOT_MEASURED = "not measured: no accelerator in this session"
TARGETS = {
    "preprocess_vs_reference": 10.0,  # a / b, images/s, at least
    "preprocess_vs_ceiling": 0.70,  # a / c, at least
    "preprocess_memory_vs_reference": 0.25,  # peak a / peak b, at most
    "preprocess_memory_growth_4x": 1.25,  # peak at 4x / peak at 1x, at most (linear would be ~4)
    "training_input_vs_reference": 1.5,  # images/s, at least
    # at most, on all 2,961 images: 20 minutes on the slower 2-core kind (AVX2, no AVX-512), the
    # run-time target of the main job (docs/model-quality.md) that the local-cpu preset is sized for
    "end_to_end_seconds": 1200.0,
}
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
COMMAND = "python -m benchmarks"


def ratio(a, b, digits: int = 3):
    try:
        if a is None or b in (None, 0):
            return None
        return round(float(a) / float(b), digits)
    except (TypeError, ValueError):
        return None


def ok(m: dict | None) -> bool:
    return bool(m) and m.get("ok", False)


def _target(
    tid: str, description: str, measured, target: float, at_least: bool, unit: str = "", note: str = ""
) -> dict:
    met = None if measured is None else (measured >= target if at_least else measured <= target)
    return {
        "id": tid,
        "description": description,
        "measured": measured,
        "target": target,
        "comparison": ">=" if at_least else "<=",
        "unit": unit,
        "met": met,
        "note": note,
    }


def gpu_note(training: dict) -> dict:
    devices = {
        m.get("device")
        for t in training.values()
        if isinstance(t, dict)
        for m in t.values()
        if isinstance(m, dict) and m.get("device")
    }
    if any(d and d != "cpu" for d in devices):
        return {"measured": True, "note": f"training benchmark ran on {', '.join(sorted(d for d in devices if d))}"}
    return {"measured": False, "note": GPU_NOT_MEASURED}


def evaluate_targets(report: dict) -> list[dict]:
    pre = report.get("preprocessing", {})
    size = str(report["settings"]["compare_image_size"])
    p = pre.get(size, {})
    subset = "" if report["data"]["full_data_set"] else "subset: not the target condition"
    out = [
        _target(
            "preprocess_vs_reference",
            f"preprocessing throughput, project / reference ({size} px)",
            p.get("a_over_b"),
            TARGETS["preprocess_vs_reference"],
            True,
            "x",
            subset,
        ),
        _target(
            "preprocess_vs_ceiling",
            f"preprocessing throughput, project / decode ceiling ({size} px)",
            p.get("a_over_c"),
            TARGETS["preprocess_vs_ceiling"],
            True,
            "",
            subset,
        ),
        _target(
            "preprocess_memory_vs_reference",
            f"preprocessing peak memory, project / reference ({size} px)",
            p.get("memory_a_over_b"),
            TARGETS["preprocess_memory_vs_reference"],
            False,
            "",
            subset,
        ),
    ]
    points = [q for q in report.get("scaling", {}).get("points", []) if q.get("ok")]
    growth = None
    if points and points[0]["factor"] == 1 and len(points) > 1:
        growth = ratio(points[-1]["peak_rss_mb"], points[0]["peak_rss_mb"])
    last = points[-1]["factor"] if points else 4
    out.append(
        _target(
            "preprocess_memory_growth_4x",
            f"preprocessing peak memory at {last}x / at 1x the data",
            growth,
            TARGETS["preprocess_memory_growth_4x"],
            False,
            "",
            "flat: at most 1.25 (linear growth would be about 4)" + (f"; {subset}" if subset else ""),
        )
    )
    t = report.get("training_input", {}).get("basic", {})
    out.append(
        _target(
            "training_input_vs_reference",
            "training images/s, project input / reference feeding (basic model)",
            t.get("ratio"),
            TARGETS["training_input_vs_reference"],
            True,
            "x",
            subset,
        )
    )
    e2e = report.get("end_to_end", {})
    measured = e2e.get("seconds") if ok(e2e) else None
    failed = ((e2e.get("error") or "").strip().splitlines() or ["not run"])[-1][:160]
    note = e2e.get("note", "") if e2e.get("skipped") else ("" if ok(e2e) else f"the run failed: {failed}")
    if measured is not None and e2e.get("images") != FULL_DATA_IMAGES:
        note = f"run on {e2e.get('images')} images, not all {FULL_DATA_IMAGES}: not the target condition"
    out.append(
        _target(
            "end_to_end_seconds",
            f"main job wall time on all {FULL_DATA_IMAGES:,} images",
            measured,
            TARGETS["end_to_end_seconds"],
            False,
            "s",
            note,
        )
    )
    return out


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _row(label: str, m: dict | None, extra: str = "") -> str:
    m = m or {}
    if not m.get("ok"):
        why = (m.get("error") or m.get("note") or "not measured").strip().splitlines()[-1][:120]
        return f"| {label} | - | - | - | - | - | {why} |"
    return (
        f"| {label} | {_fmt(m.get('images'))} | {_fmt(m.get('seconds'), 2)} | {_fmt(m.get('images_per_s'))} | "
        f"{_fmt(m.get('peak_rss_mb'), 0)} | {_fmt(m.get('cpu_seconds'), 1)} | {extra} |"
    )


def markdown(report: dict) -> str:
    m = report["machine"]
    d = report["data"]
    s = report["settings"]
    lines = [
        f"Machine: {machine_line(m)}; load average at start {m['load_average_at_start']}, "
        f"at end {m.get('load_average_at_end', '-')}. Run {report['created']}, mode {report['mode']}.",
        f"Data: {d['images']:,} images ({d['bytes'] / 2**20:.0f} MB)"
        + (" - the full data set." if d["full_data_set"] else f" - **{d['note']}**."),
        "",
        "| Target | Measured | Target | Met |",
        "| --- | --- | --- | --- |",
    ]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        measured = _fmt(t["measured"], 2) + (t["unit"] if t["measured"] is not None and t["unit"] == "x" else "")
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(
            f"| {t['description']}{note} | {measured} | {t['comparison']} {_fmt(t['target'], 2)}{t['unit']} | {met} |"
        )
    lines.append(f"| GPU training benchmark | {report['gpu']['note']} | once per accelerator session | - |")
    lines += [
        "",
        "| Measurement | Images | Seconds | Images/s | Peak MB | CPU s | Notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    pre = report.get("preprocessing", {})
    for size in dict.fromkeys((str(s["compare_image_size"]), str(s["project_image_size"]))):
        p = pre.get(size)
        if not p:
            continue
        srv = lambda k: f"S3 server CPU {_fmt(p[k].get('server_cpu_seconds'), 1)} s" if p.get(k, {}).get("ok") else ""  # noqa: E731
        we = p.get("with_endpoint") or {}
        we_note = (
            (
                f"; ceiling with the S3 GETs paid (diagnostic) {_fmt(we.get('ceiling_images_per_s'))} images/s, "
                f"a / it {_fmt(we.get('a_over_ceiling'), 2)}"
            )
            if we
            else ""
        )
        lines.append(
            _row(
                f"(a) project preprocessing, S3, {size} px",
                p.get("project"),
                f"a/b {_fmt(p.get('a_over_b'), 2)}x, a/c {_fmt(p.get('a_over_c'), 2)}; {srv('project')}{we_note}",
            )
        )
        lines.append(
            _row(
                f"(b) reference approach, S3, {size} px",
                p.get("reference"),
                f"pickle {_fmt((p.get('reference') or {}).get('pickle_bytes', 0) / 2**20, 0)} MB; {srv('reference')}"
                if ok(p.get("reference"))
                else "",
            )
        )
        lines.append(
            _row(
                f"(c) decode-only, 1 core, {size} px",
                p.get("ceiling_1core"),
                f"ceiling x{s['cores_for_ceiling']} cores = {_fmt(p.get('ceiling_images_per_s'))} images/s",
            )
        )
        lines.append(
            _row(f"decode-only, {s['cores_for_ceiling']} threads, {size} px", p.get("decode_all_cores"), "diagnostic")
        )
    if pre.get("fetch_only"):
        lines.append(
            _row(
                f"GET-only, S3, {pre['fetch_only'].get('threads', '-')} threads (no decode)",
                pre["fetch_only"],
                f"diagnostic; S3 server CPU {_fmt(pre['fetch_only'].get('server_cpu_seconds'), 1)} s",
            )
        )
    if pre.get("project_local"):
        lines.append(
            _row(
                f"project preprocessing, local folder, {s['compare_image_size']} px",
                pre["project_local"],
                "diagnostic: no S3",
            )
        )
    t = report.get("training_input", {})
    for model in ("basic", "tiny"):
        if model in t:
            for kind in ("project", "reference"):
                lines.append(
                    _row(
                        f"training, {model} model, {kind} input, {s['project_image_size']} px",
                        t[model].get(kind),
                        f"{model} ratio {_fmt(t[model].get('ratio'), 2)}x; {t[model].get(kind, {}).get('device', '')}"
                        if kind == "project"
                        else t[model].get(kind, {}).get("device", ""),
                    )
                )
    e = report.get("end_to_end", {})
    if e.get("ok"):
        stages = ", ".join(f"{st['task']} {st.get('seconds', 0):.0f} s" for st in e.get("stages", []))
        lines.append(
            f"| end to end: skin-cancer run | {_fmt(e.get('images'))} | {_fmt(e.get('seconds'), 0)} | - | "
            f"{_fmt(e.get('peak_rss_mb_largest_process'), 0)} (largest process; all processes "
            f"{_fmt(e.get('peak_rss_mb_all_processes'), 0)}) | - | {stages} |"
        )
        for mm in e.get("models", []):
            lines.append(
                f"| end to end: train {mm['name']} | - | {_fmt(mm['seconds'], 0)} | - | - | - | "
                f"val acc {mm['val_accuracy']:.3f}, test acc {mm['test_accuracy']:.3f} |"
            )
        if e.get("preprocess_report"):
            pr = e["preprocess_report"]
            lines.append(
                f"| end to end: preprocess (inside the task) | {_fmt(e.get('images'))} | {_fmt(pr['seconds'], 1)} | "
                f"{_fmt(pr['images_per_second'])} | - | - | {pr['image_size']} px |"
            )
    else:
        lines.append(_row("end to end: skin-cancer run", e))
    sc = report.get("scaling", {})
    for q in sc.get("points", []):
        lines.append(
            _row(
                f"scaling: project preprocessing {q['factor']}x, {sc['image_size']} px",
                q,
                f"S3 server CPU {_fmt(q.get('server_cpu_seconds'), 1)} s" if q.get("ok") else "",
            )
        )
    lines += [
        "",
        "Peak MB: the measured process's peak resident memory (VmHWM), interpreter and imports included; "
        "the S3 server runs in its own process and is not counted. CPU s: that process's user+system CPU during "
        "the measured part. Ceiling (c): the project's decode_image over bytes in memory on one core, times the cores. "
        "Ceiling with the S3 GETs paid (diagnostic): cores / (decode CPU + GET client CPU + S3 server CPU, per image, "
        "from the decode-only and GET-only runs). Training images/s exclude the first (warm-up) epoch.",
    ]
    return "\n".join(lines) + "\n"


def update_readme(path: str | Path, table: str, heading: str) -> bool:
    """Replace the text between the bench markers in ``path``; False when the markers are missing."""
    p = Path(path)
    text = p.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    p.write_text(f"{head}{README_START}\n{heading}\n\n{table}{README_END}{tail}")
    return True


def write_report(report: dict, out_dir: Path, readme: str | Path | None = None) -> None:
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1, default=float))
    table = markdown(report)
    (out_dir / "bench.md").write_text(f"# skin-cancer bench\n\n{table}")
    if readme:
        label = (
            "full data set"
            if report["data"]["full_data_set"]
            else f"SUBSET of {report['data']['images']} images, shared machine: to be replaced by the full run"
        )
        if not update_readme(readme, table, f"Current figures ({label}), from `{COMMAND}`'s `bench.md`:"):
            print(f"warning: {readme} has no {README_START} ... {README_END} markers; not updated", file=sys.stderr)
