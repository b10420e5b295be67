"""The benchmark machinery (the ``benchmarks`` package) on a tiny SYNTHETIC data set, and its pure helpers.

Checks the report's structure and that every figure is a positive number; no timing
assertions (timed assertions are flaky on shared machines: the benchmark reports ratios).
In the default ``pytest`` run.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.data import copy_key
from benchmarks.end_to_end import parse_kfp_log
from benchmarks.report import GPU_NOT_MEASURED, README_END, README_START, TARGETS, markdown
from benchmarks.suite import run_bench


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    from components.core.data.demo_data import write_demo_data

    root = tmp_path_factory.mktemp("bench")
    data = root / "raw"
    write_demo_data(str(data), train_per_class=20, test_per_class=6, size=48, seed=3)
    (root / "README.md").write_text(f"# x\n\n{README_START}\nold table\n{README_END}\n\nafter\n")
    report = run_bench(
        data=data,
        out=root / "out",
        skip_e2e=True,
        compare_size=48,
        project_size=32,
        batch_size=8,
        train_steps=2,
        train_epochs=2,
        scale_factors=(1, 2),
        readme=root / "README.md",
        log=lambda *_: None,
    )
    return root, report


def _positive(m: dict) -> None:
    assert m["ok"], m.get("error")
    assert m["images"] > 0 and m["seconds"] > 0 and m["images_per_s"] > 0, m
    assert m["peak_rss_mb"] > 0 and m["machine"]


@pytest.mark.slow
def test_report_structure_and_positive_figures(tiny_report):
    root, report = tiny_report
    assert report["failures"] == []
    assert report["machine"]["cores_usable"] >= 1 and report["machine"]["memory_gib"] > 0
    assert report["data"]["images"] == 52 and report["data"]["full_data_set"] is False
    for size in ("48", "32"):
        p = report["preprocessing"][size]
        for key in ("project", "reference", "ceiling_1core", "decode_all_cores"):
            _positive(p[key])
        assert p["project"]["images"] == p["reference"]["images"] == 52
        # the reference re-implementation labels every image from its folder, like the project
        assert p["reference"]["class_counts"] == p["project"]["class_counts"] == {"benign": 26, "malignant": 26}
        assert (
            p["reference"]["dtype"] == "float64" and p["reference"]["uploaded_bytes"] == p["reference"]["pickle_bytes"]
        )
        assert p["a_over_b"] > 0 and p["a_over_c"] > 0 and p["memory_a_over_b"] > 0 and p["ceiling_images_per_s"] > 0
        assert p["with_endpoint"]["ceiling_images_per_s"] > 0
    _positive(report["preprocessing"]["fetch_only"])
    _positive(report["preprocessing"]["project_local"])
    for model in ("basic", "tiny"):
        t = report["training_input"][model]
        _positive(t["project"])
        _positive(t["reference"])
        assert t["ratio"] > 0
    assert [p["factor"] for p in report["scaling"]["points"]] == [1, 2]
    for p in report["scaling"]["points"]:
        assert p["ok"] and p["images_per_s"] > 0 and p["peak_rss_mb"] > 0
    assert report["scaling"]["points"][1]["images"] == 2 * report["scaling"]["points"][0]["images"]
    assert report["end_to_end"]["skipped"] and "skip-e2e" in report["end_to_end"]["note"]
    assert report["gpu"] == {"measured": False, "note": GPU_NOT_MEASURED}
    ids = {t["id"] for t in report["targets"]}
    assert ids == set(TARGETS)
    for t in report["targets"]:
        if t["id"] != "end_to_end_seconds":
            assert t["measured"] is not None and t["met"] in (True, False), t
    on_disk = json.loads((root / "out" / "bench.json").read_text())
    assert on_disk["targets"] == report["targets"]


@pytest.mark.slow
def test_markdown_and_readme_match_the_report(tiny_report):
    root, report = tiny_report
    table = (root / "out" / "bench.md").read_text()
    assert "| Target | Measured | Target | Met |" in table and "SUBSET" in table
    assert GPU_NOT_MEASURED in table
    readme = (root / "README.md").read_text()
    assert "old table" not in readme and readme.endswith("after\n")
    assert markdown(report) in readme


@pytest.mark.slow
def test_reference_params_differ_only_by_head(tiny_report):
    _, report = tiny_report
    basic = report["training_input"]["basic"]
    # Dense(features -> 2) minus Dense(features -> 1): one more set of weights and a bias.
    width = 32 * 2**3  # the basic family's last block width (4 blocks from width 32)
    assert basic["reference"]["params"] - basic["project"]["params"] == width + 1


def test_parse_kfp_log():
    text = (
        "23:59:58.100 - INFO - Executing task \x1b[96m'preprocess'\x1b[0m\n"
        "some output\n"
        "00:00:01.600 - INFO - Task \x1b[96m'preprocess'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m\n"
        "00:00:01.700 - INFO - Executing task 'train'\n"
        "00:00:11.700 - INFO - Task 'train' finished with status SUCCESS\n"
        "00:00:11.800 - INFO - Executing task 'train'\n"
        "00:00:12.800 - INFO - Task 'train' finished with status FAILURE\n"
    )
    stages = parse_kfp_log(text)
    assert stages == [
        {"task": "preprocess", "seconds": 3.5, "status": "SUCCESS"},
        {"task": "train", "seconds": 10.0, "status": "SUCCESS"},
        {"task": "train #2", "seconds": 1.0, "status": "FAILURE"},
    ]


def test_copy_keys_are_new_keys_in_the_same_folder():
    assert copy_key("train/benign/12.jpg", 3) == "train/benign/copy3-12.jpg"
