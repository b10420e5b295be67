"""Evidence per subgroup (components/core/evaluation/subgroups.py): colour, ITA on drawn skin with
a lesion and a vignette, the report's figures against hand counts, and the subgroup_recall gate.

Every report here runs fairlearn's bootstrap with few resamples and a fixed seed: the intervals
are only checked to hold their value, the values themselves are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2lab

from components.core.evaluation import subgroups as sg

N_BOOT = 40


# --- colour ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rgb, lab",
    [
        ((255, 255, 255), (100.0, 0.0, 0.0)),  # sRGB white is the D65 white
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((255, 0, 0), (53.24, 80.09, 67.20)),  # the published value for sRGB red
        ((0, 255, 0), (87.73, -86.18, 83.18)),
        ((0, 0, 255), (32.30, 79.19, -107.86)),
    ],
)
def test_srgb_to_lab_gives_the_published_values(rgb, lab):
    # Published to two decimals; white's a*, b* are 0.002 and 0.005 off (the published matrix and
    # white point disagree in their last digits), inside the same half-unit of the last decimal.
    for given in (np.array(rgb, dtype=np.uint8), np.array(rgb, dtype=np.float64)):
        assert sg.srgb_to_lab(given) == pytest.approx(lab, abs=0.006)


def test_srgb_to_lab_matches_scikit_image_on_random_colours():
    rng = np.random.default_rng(0)
    as_uint8 = rng.integers(0, 256, size=(4000, 3)).astype(np.uint8)
    as_float = rng.random((4000, 3)) * 255
    for rgb in (as_uint8, as_float):
        expected = rgb2lab(rgb[None].astype(np.float64) / 255.0)[0]
        assert np.abs(sg.srgb_to_lab(rgb) - expected).max() < 1e-3
    image = rng.integers(0, 256, size=(5, 7, 3)).astype(np.uint8)  # any leading shape
    assert sg.srgb_to_lab(image).shape == (5, 7, 3)


def test_otsu_splits_two_levels_between_them():
    values = np.r_[np.full(300, 20.0), np.full(700, 75.0)]
    t = sg.otsu_threshold(values)
    assert 20 < t <= 75
    assert (values < t).sum() == 300
    assert sg.otsu_threshold(np.full(10, 42.0)) == 42.0  # one level: nothing below it


# --- skin tone ------------------------------------------------------------------------------------


def dermoscopy(skin: tuple[int, int, int], lesion=(40, 25, 20), size: int = 96) -> np.ndarray:
    """Skin of one colour, a dark lesion disc in the middle, black corners outside the scope's
    circle, a hair across and a little glare: what skin_lab has to see through."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[...] = skin
    pixels[r < size * 0.2] = lesion
    pixels[r > size * 0.5] = 0  # the vignette
    pixels[size // 4, 5 : size - 5] = (30, 20, 15)  # a hair
    pixels[size - 25 : size - 22, size // 2 : size // 2 + 4] = 255  # glare
    return pixels


def test_skin_lab_and_ita_of_drawn_skin_worked_out_by_hand():
    """Skin sRGB (224, 172, 140). Linear (IEC 61966-2-1): ((c/255 + 0.055) / 1.055) ** 2.4 =
    0.74540, 0.41254, 0.26225. XYZ (D65 matrix): 0.50228, 0.47249, 0.31278; over the white
    (0.95047, 1, 1.08883): 0.52845, 0.47249, 0.28726; cube roots 0.80848, 0.77887, 0.65982.
    L* = 116 * 0.77887 - 16 = 74.349; b* = 200 * (0.77887 - 0.65982) = 23.809.
    ITA = atan2(74.349 - 50, 23.809) = atan2(24.349, 23.809) = 45.64 degrees: light (41-55]."""
    L, b = sg.skin_lab(dermoscopy((224, 172, 140)))
    assert (L, b) == pytest.approx((74.349, 23.809), abs=2e-3)
    angle = sg.ita(L, b)
    assert angle == pytest.approx(math.degrees(math.atan2(24.349, 23.809)), abs=0.01)
    assert angle == pytest.approx(45.64, abs=0.01)
    assert sg.ita_group(angle) == "light"


@pytest.mark.parametrize(
    "skin, group",
    [
        ((233, 196, 170), "very light"),  # L* 81.68, b* 17.96: 60.45 degrees
        ((198, 140, 100), "tan"),  # L* 63.08, b* 30.09: 23.49
        ((160, 110, 80), "brown"),  # L* 50.93, b* 24.68: 2.15
        ((110, 70, 50), "dark"),  # L* 33.83, b* 19.08: -40.28
    ],
)
def test_skin_lab_returns_the_skin_colour_not_the_lesion_or_vignette(skin, group):
    expected = rgb2lab(np.array([[skin]], dtype=np.float64) / 255.0)[0, 0]
    L, b = sg.skin_lab(dermoscopy(skin))
    assert (L, b) == pytest.approx((expected[0], expected[2]), abs=2e-3)
    assert sg.ita_group(sg.ita(L, b)) == group


def test_skin_lab_falls_back_to_every_non_black_pixel_when_the_lesion_fills_the_frame():
    pixels = np.full((40, 40, 3), (90, 60, 50), dtype=np.uint8)  # lesion everywhere...
    pixels[0, :10] = (224, 172, 140)  # ...but a sliver of skin: 5 of the 400 pixels read, under MIN_SKIN
    L, b = sg.skin_lab(pixels)
    lesion = sg.srgb_to_lab(np.array((90, 60, 50), dtype=np.uint8))
    assert (L, b) == pytest.approx((lesion[0], lesion[2]), abs=1e-9)  # the median of all: the lesion's


def test_ita_keeps_b_at_or_below_zero_finite():
    assert sg.ita(60.0, 0.0) == pytest.approx(90.0)
    assert sg.ita(40.0, 0.0) == pytest.approx(-90.0)
    assert sg.ita(60.0, -10.0) == pytest.approx(135.0)


@pytest.mark.parametrize(
    "angle, group",
    [
        (90.0, "very light"),
        (55.001, "very light"),
        (55.0, "light"),  # every boundary belongs to the darker group
        (41.001, "light"),
        (41.0, "intermediate"),
        (28.0, "tan"),
        (10.001, "tan"),
        (10.0, "brown"),
        (-29.999, "brown"),
        (-30.0, "dark"),
        (-90.0, "dark"),
    ],
)
def test_ita_group_boundaries(angle, group):
    assert sg.ita_group(angle) == group
    assert group in sg.ITA_GROUPS


def test_image_attributes_read_batches_sizes_and_brightness_tertiles():
    skins = [(233, 196, 170), (224, 172, 140), (198, 140, 100), (160, 110, 80), (110, 70, 50), (70, 45, 35)]
    images = np.stack([dermoscopy(s, size=48) for s in skins])
    sources = [{"key": f"k{i}", "sha1": "x", "width": 600, "height": 450} for i in range(5)] + [{"key": "old"}]
    attributes = sg.image_attributes((images[i : i + 4] for i in range(0, 6, 4)), sources)
    assert attributes["skin_tone_ita"] == ["very light", "light", "tan", "brown", "dark", "dark"]
    assert attributes["image_size"] == ["600×450"] * 5 + ["unknown"]
    # Lightest skin first, so the grey levels fall: two images per third.
    assert attributes["brightness"] == ["bright third"] * 2 + ["middle third"] * 2 + ["dark third"] * 2
    with pytest.raises(ValueError, match="5 source entries for 6 images"):
        sg.image_attributes([images], sources[:5])


# --- the report -----------------------------------------------------------------------------------

# Group "very light", 40 images: 20 malignant (16 at p 0.9, 4 at 0.2), 20 benign (15 at 0.1, 5 at
# 0.8), 8 referred. Group "light", 10 images, all benign (8 at 0.1, 2 at 0.7), 1 referred.
# Threshold 0.5.
VERY_LIGHT = ([1] * 20 + [0] * 20, [0.9] * 16 + [0.2] * 4 + [0.1] * 15 + [0.8] * 5, 8)
LIGHT = ([0] * 10, [0.1] * 8 + [0.7] * 2, 1)


def table(*groups: tuple[str, tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    labels, p, referred, names = [], [], [], []
    for name, (y, scores, n_referred) in groups:
        labels += y
        p += scores
        referred += [True] * n_referred + [False] * (len(y) - n_referred)
        names += [name] * len(y)
    return np.array(labels), np.array(p), np.array(referred), {"skin_tone_ita": names}


@pytest.fixture(scope="module")
def report() -> dict:
    labels, p, referred, attributes = table(("very light", VERY_LIGHT), ("light", LIGHT))
    attributes["image_size"] = ["224×224"] * len(labels)  # one group: the overall figures
    return sg.subgroup_report(labels, p, 0.5, referred, attributes, n_boot=N_BOOT, seed=3)


def groups(report: dict, attribute: str = "skin_tone_ita") -> dict[str, dict]:
    return {row["group"]: row for row in report["attributes"][attribute]}


def values(row: dict) -> dict[str, float | None]:
    return {m: v["value"] for m, v in row["metrics"].items()}


def test_figures_of_a_hand_made_table(report):
    """Very light: TP 16, FN 4, TN 15, FP 5: accuracy 31/40, recall 16/20, specificity 15/20,
    referral 8/40; AUC: each 0.9 beats all 20 benign, each 0.2 the 15 at 0.1: (320 + 60) / 400.
    Overall adds 10 benign (TN 8, FP 2, 1 referred): accuracy 39/50, recall 16/20, specificity
    23/30, referral 9/50; AUC (16 * 30 + 4 * 23) / 600."""
    very_light = groups(report)["very light"]
    assert (very_light["n"], very_light["n_benign"], very_light["n_malignant"]) == (40, 20, 20)
    assert values(very_light) == pytest.approx(
        {"accuracy": 31 / 40, "malignant_recall": 0.8, "specificity": 0.75, "auc": 0.95, "referral_rate": 0.2}
    )
    overall = report["overall"]
    assert (overall["n"], overall["n_benign"], overall["n_malignant"]) == (50, 30, 20)
    assert values(overall) == pytest.approx(
        {
            "accuracy": 39 / 50,
            "malignant_recall": 0.8,
            "specificity": 23 / 30,
            "auc": 572 / 600,
            "referral_rate": 9 / 50,
        }
    )
    for row in (very_light, overall):
        for metric in row["metrics"].values():
            assert metric["low"] <= metric["value"] <= metric["high"]


def test_auc_is_the_same_number_as_scikit_learns():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # ties
    assert sg._auc(y, None, scores) == pytest.approx(roc_auc_score(y, scores))


def test_a_one_class_group_has_no_auc_and_a_small_group_is_listed_not_judged(report):
    light = groups(report)["light"]
    assert (light["n"], light["n_benign"], light["n_malignant"]) == (10, 10, 0)
    assert light["status"] == "too few to judge"
    assert light["metrics"]["auc"] == {"value": None, "low": None, "high": None, "note": "undefined: one class"}
    assert light["metrics"]["malignant_recall"]["value"] is None
    assert values(light)["accuracy"] == pytest.approx(0.8)
    assert values(light)["specificity"] == pytest.approx(0.8)
    assert values(light)["referral_rate"] == pytest.approx(0.1)
    assert groups(report)["very light"]["status"] == "enough to judge"


def test_every_ita_group_is_listed_even_without_images(report):
    rows = report["attributes"]["skin_tone_ita"]
    assert [r["group"] for r in rows] == list(sg.ITA_GROUPS)
    dark = groups(report)["dark"]
    assert dark["n"] == 0 and dark["status"] == "too few to judge"
    assert dark["metrics"]["accuracy"]["value"] is None


def test_an_attribute_with_one_group_is_the_overall_figures(report):
    (only,) = report["attributes"]["image_size"]
    assert only["group"] == "224×224"
    assert only["metrics"] == report["overall"]["metrics"]


def test_the_report_records_its_method_and_is_reproducible(report):
    import fairlearn

    assert report["method"]["library"] == f"fairlearn {fairlearn.__version__} MetricFrame"
    assert (report["method"]["n_boot"], report["method"]["seed"]) == (N_BOOT, 3)
    labels, p, referred, attributes = table(("very light", VERY_LIGHT), ("light", LIGHT))
    attributes["image_size"] = ["224×224"] * len(labels)
    assert sg.subgroup_report(labels, p, 0.5, referred, attributes, n_boot=N_BOOT, seed=3) == report


def test_without_a_decision_policy_the_referral_rate_is_not_available():
    labels, p, _, attributes = table(("very light", VERY_LIGHT))
    out = sg.subgroup_report(labels, p, 0.5, None, attributes, n_boot=10)
    assert out["overall"]["metrics"]["referral_rate"]["value"] is None
    assert "no decision policy" in out["overall"]["metrics"]["referral_rate"]["note"]
    assert out["overall"]["metrics"]["accuracy"]["value"] == pytest.approx(31 / 40)


def test_the_markdown_table_and_the_figure(report):
    text = sg.markdown_table({**report, "gate": sg.subgroup_recall_gate(report, None)})
    assert "| light | 10 (10/0) |" in text
    assert "undefined: one class" in text and "too few to judge" in text
    assert "| very light | 40 (20/20) | 0.775 [" in text
    assert sg.ITA_NOT_FITZPATRICK in text
    assert "ITA measures the colour of the skin around the lesion under the image's own lighting" in text
    assert "Gate `subgroup_recall`: passed." in text
    assert text.count("| group | n (benign/malignant) |") == 3  # all images, skin tone, size
    assert sg.subgroups_png(report)[:8] == b"\x89PNG\r\n\x1a\n"


# --- the gate -------------------------------------------------------------------------------------


def detected(n_malignant: int, found: int, n_benign: int) -> tuple:
    """A group: ``found`` of ``n_malignant`` malignant above the threshold, every benign below."""
    y = [1] * n_malignant + [0] * n_benign
    scores = [0.9] * found + [0.1] * (n_malignant - found) + [0.1] * n_benign
    return y, scores, 0


def gate_for(*groups_: tuple[str, tuple], floor: float | None = None) -> dict:
    labels, p, referred, attributes = table(*groups_)
    report = sg.subgroup_report(labels, p, 0.5, referred, attributes, n_boot=N_BOOT, seed=0)
    return sg.subgroup_recall_gate(report, floor)


def test_the_gate_passes_a_fair_table():
    gate = gate_for(("very light", detected(20, 16, 20)), ("light", detected(20, 16, 20)), floor=0.5)
    assert gate["name"] == "subgroup_recall"
    assert gate["passed"] and gate["failures"] == []
    assert "2 group(s) of at least 30 images judged" in gate["detail"]


def test_the_gate_fails_a_group_of_30_or_more_whose_recall_is_over_010_below_overall():
    """Overall recall (18 + 12) / 40 = 0.75; light's 12/20 = 0.6 is 0.15 below."""
    gate = gate_for(("very light", detected(20, 18, 20)), ("light", detected(20, 12, 20)))
    assert not gate["passed"]
    (failure,) = gate["failures"]
    assert (failure["attribute"], failure["group"]) == ("skin_tone_ita", "light")
    assert failure["recall"] == pytest.approx(0.6)
    assert "more than 0.10 below the overall 0.750" in failure["why"]


def test_the_gate_fails_a_group_whose_upper_bound_is_below_the_recall_floor():
    gate = gate_for(("very light", detected(20, 16, 20)), floor=0.99)
    (failure,) = gate["failures"]
    assert failure["high"] < 0.99 and "below the recall floor 0.990" in failure["why"]
    assert gate_for(("very light", detected(20, 16, 20)), floor=None)["passed"]


def test_the_gate_does_not_judge_a_group_under_30_or_one_without_malignant_images():
    """Tan: 10 images, none of its 5 malignant found; light: 40 benign only. Neither can fail."""
    gate = gate_for(
        ("very light", detected(20, 16, 20)), ("tan", detected(5, 0, 5)), ("light", detected(0, 0, 40)), floor=0.5
    )
    assert gate["passed"], gate
    assert "Too few to judge (< 30 images): skin_tone_ita=tan" in gate["detail"]
    assert "No malignant image, so recall cannot fail: skin_tone_ita=light" in gate["detail"]


# --- the train step's summary ---------------------------------------------------------------------


def test_the_train_summary_carries_the_subgroups_only_when_there_are_some():
    from components.core.modeling.train_config import TrainConfig
    from components.core.step_results import TrainSummary

    base = dict(
        name="m", family="basic", run_id="r", model_uri="u", threshold=0.5, val={}, test={}, params=1, seconds=1.0
    )
    without = TrainSummary(**base, config=TrainConfig())
    assert "subgroups" not in without.to_dict()
    evidence = {"uri": "runs:/r/subgroups.json", "sha256": "ab", "gate": {"passed": True}, "table": "| x |"}
    back = TrainSummary.from_json(TrainSummary(**base, config=TrainConfig(), subgroups=evidence).to_json())
    assert back.subgroups == evidence


class Split:
    """What the evidence reads of a preprocessed split (SplitArrays): length, labels, batches, manifest."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.manifest = {"sources": [{"key": f"k{i}"} for i in range(len(labels))]}

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, size: int):
        for start in range(0, len(self.labels), size):
            yield self.images[start : start + size]


def test_a_failure_in_the_evidence_is_recorded_not_raised(monkeypatch):
    """The train step calls subgroup_evidence after the model is logged: whatever goes wrong there
    comes back as {"error"} and the run's subgroups_error tag, and the trained model stays."""
    from types import SimpleNamespace

    import mlflow

    from components.core.steps.train import subgroup_evidence

    tags = {}
    monkeypatch.setattr(mlflow, "MlflowClient", lambda: SimpleNamespace(set_tag=lambda run, k, v: tags.update({k: v})))
    test = Split(np.stack([dermoscopy((224, 172, 140), size=16)] * 3), np.array([0, 1, 1]))
    result = SimpleNamespace(test_scores=np.array([0.1, 0.9]), threshold=0.5, test_referred=None, test={})
    out = subgroup_evidence(result, test, "run-1")
    assert out == {"error": "ValueError: scores: 2 values for 3 images"}
    assert tags == {"subgroups_error": out["error"]}
