"""The front page stays a front page, and the benchmark table keeps the markers it is written between."""

from pathlib import Path

from benchmarks.report import README_END, README_START

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_benchmarks_page_has_the_table_markers_once_and_in_order():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count(README_START) == 1 and text.count(README_END) == 1
    assert text.index(README_START) < text.index(README_END)
