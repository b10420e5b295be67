"""The manual's paragraph on the parameter presets (docs/command-line.md) says what pipelines/presets.py holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = (
    "basic",
    "crossval",
    "resnet50",
    "efficientnet",
    "efficientnet-lite0",
    "efficientnet-lite1",
    "efficientnet-lite2",
    "mobilenetv3",
)


def described(name: str) -> str:
    """The manual's parenthesis after `name` in the "Parameter presets" paragraph."""
    text = " ".join(
        (ROOT / "docs" / "command-line.md")
        .read_text()
        .split("Parameter presets live in", 1)[1]
        .split("\n\n")[0]
        .split()
    )
    start = text.index(f"`{name}` (") + len(f"`{name}` (")
    depth = 1
    for end in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            return text[start:end]
    raise AssertionError(f"unbalanced parenthesis after `{name}` in docs/command-line.md")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_size_epochs_and_families_match_the_preset(name):
    preset, text = PRESETS[name], described(name)
    assert f"{preset['image_size']} px" in text
    assert re.search(rf"\b{preset['epochs']} epochs\b", text), text
    named = set(re.findall(r"`([a-z0-9-]+)`", text)) & set(FAMILIES)
    assert named == {m["family"] for m in preset["models"]}, text


def test_the_local_preset_splits_its_epochs_between_head_and_fine_tuning():
    (model,) = PRESETS["local-cpu"]["models"]
    head, total = model["head_epochs"], PRESETS["local-cpu"]["epochs"]
    text = described("local-cpu")
    assert (
        f"{head} epoch of the head" in text
        and f"then {total - head} fine-tuning it from `{model['fine_tune_from']}`" in text
    )
    assert "temperature scaling" in text and model["calibrate"] and f"{model['augmentation']} augmentation" in text


def test_the_check_reads_what_the_readme_says():
    """Not vacuous: a README saying 224 px for local-cpu (as it once did) does not match."""
    assert "224 px" not in described("local-cpu") and PRESETS["local-cpu"]["image_size"] != 224
