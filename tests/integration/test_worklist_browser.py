"""The scoring worklist in a real browser (headless Debian Chromium, Playwright): what a person
reads of a referred image. An out-of-scope image shows no probability, an uncertain one what it
could be; a decided image its probability. The rows themselves keep every field."""

from __future__ import annotations

import datetime as dt


def _row(key: str, p: float, decision: str, reason: str | None, prediction_set: list[str] | None) -> dict:
    return {
        "key": key,
        "sha256": key,
        "model_name": "m",
        "model_version": "1",
        "p_malignant": p,
        "label": "malignant" if p >= 0.5 else "benign",
        "decision": decision,
        "refer_reason": reason,
        "error": None,
        "scored_at": dt.datetime.now(dt.timezone.utc),
        "input_features": None,
        "prediction_set": prediction_set,
    }


ROWS = [
    # A colour-shifted lesion the detector refused: the model's 0.999 must not reach a person.
    _row("shifted.jpg", 0.9991, "refer", "out_of_scope", ["malignant"]),
    _row("unsure.jpg", 0.4871, "refer", "uncertain", ["benign", "malignant"]),
    _row("mole.jpg", 0.0312, "benign", None, ["benign"]),
]
SUMMARY = {
    "scored": 3,
    "referred": 2,
    "malignant": 0,
    "errors": 0,
    "already_scored": 0,
    "signals": [],
    "retrain_recommended": False,
    "retrain_reasons": [],
    "review_recommended": False,
    "review_reasons": [],
}


def test_a_referred_image_shows_no_confident_number(browser, tmp_path):
    from components.core.scoring.report import render, shown_result

    assert [shown_result(r) for r in ROWS] == ["-", "could be: benign or malignant", "0.031"]
    assert shown_result({**ROWS[1], "prediction_set": None}) == "uncertain"  # a row from before the set was kept
    assert shown_result({**ROWS[1], "prediction_set": []}) == "could be: neither class"
    (tmp_path / "worklist.html").write_text(render(ROWS, SUMMARY, data_uri=""))
    page = browser.new_page()
    try:
        page.goto((tmp_path / "worklist.html").as_uri())
        cells = {
            row[1]: row
            for row in page.eval_on_selector_all(
                "table tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
            )
            if len(row) == 5
        }
        assert cells["shifted.jpg"][2:] == ["-", "refer", "does not look like a dermoscopic image of a lesion"]
        assert cells["unsure.jpg"][2] == "could be: benign or malignant"
        assert cells["mole.jpg"][2:4] == ["0.031", "benign"]
        text = page.inner_text("body")
        assert "0.999" not in text and "0.487" not in text
    finally:
        page.close()
