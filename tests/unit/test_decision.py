"""The decision policy (components/core/decision): conformal sets and decisions worked by hand on
tiny score lists, the image checks, the scope detector's arithmetic, storage that refuses a
missing or damaged policy by name, and the detector against non-dermoscopy images (with the real
validation images when ../shared/data/skin-cancer is present)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from components.core.decision import DECISION_FILE, OOD_FILE, DecisionPolicy, PolicyError, conformal, image_checks
from components.core.decision.evaluation import referral_metrics, risk_coverage
from components.core.decision.policy import Decision
from components.core.decision.scope import ScopeModel
from tests.support.drawn_images import drawn

# ---- conformal sets, by hand -----------------------------------------------------------------


def test_conformal_quantile_is_the_ceil_n_plus_one_level_th_smallest():
    scores = [0.4, 0.1, 0.3, 0.2]
    assert conformal.conformal_quantile(scores, 0.5) == 0.3  # k = ceil(5 * 0.5) = 3
    assert conformal.conformal_quantile(scores, 0.8) == 0.4  # k = ceil(5 * 0.8) = 4
    assert conformal.conformal_quantile(scores, 0.9) == math.inf  # k = 5 > n: the class is always in the set
    with pytest.raises(ValueError, match="coverage level"):
        conformal.conformal_quantile(scores, 1.0)


def test_class_conditional_sets_by_hand():
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
    # benign scores p = .1 .2 .3 .4 -> q = .3; malignant scores 1 - p = .1 .2 .3 .4 -> q = .3 -> p >= .7
    sets = conformal.fit(labels, p, 0.5)
    assert sets == {"benign_max_p": 0.3, "malignant_min_p": pytest.approx(0.7), "level": 0.5}
    assert conformal.prediction_set(0.25, sets) == ["benign"]
    assert conformal.prediction_set(0.75, sets) == ["malignant"]
    assert conformal.prediction_set(0.5, sets) == []
    assert conformal.coverage(labels, p, sets) == {"benign": 0.75, "malignant": 0.75}
    # Overlapping classes give sets with both: benign p .1 .6, malignant p .4 .9, level .6 (k = 2 of 2)
    both = conformal.fit([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.6)
    assert (both["benign_max_p"], both["malignant_min_p"]) == (0.6, pytest.approx(0.4))
    assert conformal.prediction_set(0.5, both) == ["benign", "malignant"]


def test_the_malignant_class_keeps_its_own_coverage_whatever_the_balance():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(900, int), np.ones(100, int)]  # 9:1, like many screening sets
    p = np.clip(np.r_[rng.beta(2, 5, 900), rng.beta(5, 2, 100)], 0, 1)
    sets = conformal.fit(labels[::2], p[::2], 0.9)
    cov = conformal.coverage(labels[1::2], p[1::2], sets)
    assert cov["malignant"] >= 0.82 and cov["benign"] >= 0.85  # ~0.9 each, within sampling error of 50 / 450


def test_calibration_needs_both_classes():
    with pytest.raises(ValueError, match="none is malignant"):
        conformal.fit([0, 0], [0.1, 0.2], 0.9)


# ---- decisions, by hand ----------------------------------------------------------------------


def _policy(threshold=0.5, benign_max_p=0.6, malignant_min_p=0.4, dims=3) -> DecisionPolicy:
    scope = ScopeModel(np.eye(dims, dtype=np.float32), 0.2, 0.01)
    return DecisionPolicy(
        threshold, {"benign_max_p": benign_max_p, "malignant_min_p": malignant_min_p, "level": 0.9}, scope
    )


def test_decisions_by_hand():
    policy = _policy()
    assert policy.decide(0.2, 0.3) == Decision("benign", None, ["benign"], 0.3)
    assert policy.decide(0.9, 0.3) == Decision("malignant", None, ["malignant"], 0.3)
    assert policy.decide(0.5, 0.3) == Decision("refer", "uncertain", ["benign", "malignant"], 0.3)
    # Out of scope wins whatever p says, and whatever the set is.
    assert policy.decide(0.99, 1.01).to_dict() == {
        "decision": "refer",
        "refer_reason": "out_of_scope",
        "prediction_set": ["malignant"],
        "ood_score": 1.01,
    }
    assert policy.decide(0.01, 0.2, ["blank"]).refer_reason == "out_of_scope"
    assert policy.decide(0.01, float("nan")).refer_reason == "out_of_scope"
    # A singleton set that is not the threshold's class (p between the threshold and the set's edge).
    odd = _policy(threshold=0.3, benign_max_p=0.35, malignant_min_p=0.8)
    assert odd.decide(0.32, 0.1) == Decision("refer", "uncertain", ["benign"], 0.1)
    assert odd.decide(0.5, 0.1) == Decision("refer", "uncertain", [], 0.1)


def test_referral_metrics_by_hand():
    labels = [0, 0, 1, 1, 1]
    decisions = [
        Decision("benign", None, ["benign"], 0.1),
        Decision("malignant", None, ["malignant"], 0.1),
        Decision("malignant", None, ["malignant"], 0.1),
        Decision("refer", "uncertain", ["benign", "malignant"], 0.1),
        Decision("refer", "out_of_scope", ["benign"], 3.0),
    ]
    m = referral_metrics(labels, decisions)
    assert (m["refer_rate"], m["refer_rate_out_of_scope"], m["refer_rate_uncertain"]) == (0.4, 0.2, 0.2)
    assert (m["decided"], m["decided_accuracy"]) == (3.0, pytest.approx(2 / 3))
    assert (m["decided_malignant_recall"], m["decided_specificity"]) == (1.0, 0.5)
    # benign images' sets: [benign] holds it, [malignant] does not; malignant: yes, yes (both), no
    assert (m["coverage_benign"], m["coverage_malignant"]) == (0.5, pytest.approx(2 / 3))


def test_risk_coverage_refers_more_and_decides_better_as_the_level_rises():
    """Above the level where the two classes' sets start to overlap (below it, empty sets refer
    instead: neither class is plausible), a higher level refers more and decides better."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    p = np.clip(labels * 0.35 + rng.normal(0.32, 0.18, 400), 0, 1)
    points = risk_coverage(labels[:200], p[:200], labels[200:], p[200:], 0.5, levels=(0.85, 0.9, 0.95))
    refer = [pt["refer_rate"] for pt in points]
    assert refer == sorted(refer) and refer[-1] > refer[0]
    assert points[-1]["accuracy"] > points[0]["accuracy"]


def test_the_risk_coverage_figure_is_a_picture_with_the_chosen_level():
    import io

    from PIL import Image

    from components.core.evaluation import figures

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    p = np.clip(labels * 0.4 + rng.normal(0.3, 0.15, 300), 0, 1)
    curves = {
        "val": risk_coverage(labels[:150], p[:150], labels[:150], p[:150], 0.5),
        "test": risk_coverage(labels[:150], p[:150], labels[150:], p[150:], 0.5),
    }
    png = figures.evaluation_pngs(
        "m",
        0.5,
        {},
        labels[:150],
        p[:150],
        labels[150:],
        p[150:],
        {"risk_coverage": curves, "val": {"refer_rate": 0.1, "decided_accuracy": 0.9}},
        0.9,
    )
    with Image.open(io.BytesIO(png["risk_coverage.png"])) as im:
        assert im.format == "PNG" and im.size[0] >= 400 and im.size[1] >= 300


# ---- image checks ----------------------------------------------------------------------------


def test_image_checks_name_what_a_person_can_see():
    images = drawn(64)
    assert image_checks.image_problems(images["flat_gray"]) == ["blank", "no_colour"]
    assert image_checks.image_problems(images["flat_black"]) == ["blank", "no_colour", "too_dark"]
    assert image_checks.image_problems(images["overexposed"]) == ["blank", "no_colour", "too_bright"]
    assert image_checks.image_problems(images["gray_noise"]) == ["no_colour"]
    assert image_checks.image_problems(images["text"]) == ["no_colour"]
    assert image_checks.image_problems(images["noise"]) == []
    assert image_checks.image_problems(images["noise"], (20, 400)) == ["too_small"]
    assert "greyscale" in image_checks.describe("no_colour")


# ---- the scope detector ----------------------------------------------------------------------


def test_scope_scores_are_nearest_neighbour_distance_over_the_validation_limit():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    val = np.array([[2.0, 0.1], [0.1, 3.0], [1.0, 0.9], [3.0, 3.1]])
    model = ScopeModel.fit(train, val, 0.25)
    # cosine distance to the nearest train direction, by hand: 1 - cos(angle to the closest of 0, 45, 90 degrees)
    expected = [
        1 - 2.0 / math.hypot(2.0, 0.1),
        1 - 3.0 / math.hypot(0.1, 3.0),
        1 - (1.0 + 0.9) / (math.sqrt(2) * math.hypot(1.0, 0.9)),
        1 - (3.0 + 3.1) / (math.sqrt(2) * math.hypot(3.0, 3.1)),
    ]
    assert model.distances(val) == pytest.approx(expected, abs=1e-6)  # float32 features
    # limit: the 0.75 quantile ("higher") of the four validation distances, so one of four is above 1
    assert model.limit == pytest.approx(np.quantile(expected, 0.75, method="higher"), abs=1e-6)
    assert np.sum(model.scores(val) > 1) <= 1
    assert model.scores(np.array([[1.0, -1.0]]))[0] > 1  # 45 degrees away from every train direction


# ---- storage -----------------------------------------------------------------------------------


def test_policy_files_round_trip_and_refuse_damage_by_name(tmp_path):
    policy = _policy()
    policy.save(tmp_path)
    back = DecisionPolicy.load(tmp_path)
    assert back.summary() == policy.summary()
    assert back.decide(0.9, 0.3) == policy.decide(0.9, 0.3)
    meta = json.loads((tmp_path / DECISION_FILE).read_text())
    assert len(meta["scope"]["sha256"]) == 64
    arrays = bytearray((tmp_path / OOD_FILE).read_bytes())
    arrays[-1] ^= 1
    (tmp_path / OOD_FILE).write_bytes(bytes(arrays))
    with pytest.raises(PolicyError, match=rf"^{tmp_path}: scope.npz does not match the SHA-256"):
        DecisionPolicy.load(tmp_path)
    (tmp_path / OOD_FILE).unlink()
    with pytest.raises(PolicyError, match=rf"^{tmp_path}: the model has no decision policy \(scope.npz missing\)"):
        DecisionPolicy.load(tmp_path)


def test_the_monitoring_reference_round_trips_and_a_damaged_one_is_refused_by_name(tmp_path):
    from components.core.decision import MONITORING_FILE

    policy = _policy()
    policy.monitoring = {
        "inputs": np.arange(6, dtype=np.float32).reshape(3, 2),
        "p": np.array([0.1, 0.5, 0.9]),
        "labels": np.array(["benign", "benign", "malignant"]),
        "kinds": np.array(["benign", "uncertain", "malignant"]),
    }
    policy.save(tmp_path)
    back = DecisionPolicy.load(tmp_path)
    assert back.monitoring["kinds"].tolist() == ["benign", "uncertain", "malignant"]
    np.testing.assert_array_equal(back.monitoring["inputs"], policy.monitoring["inputs"])
    assert json.loads((tmp_path / DECISION_FILE).read_text())["monitoring"]["images"] == 3
    (tmp_path / MONITORING_FILE).write_bytes((tmp_path / MONITORING_FILE).read_bytes()[:-1])
    with pytest.raises(PolicyError, match=rf"^{tmp_path}: monitoring.npz is missing or does not match"):
        DecisionPolicy.load(tmp_path)
    # A policy stored without one (an older model) loads, with no reference.
    (tmp_path / "old").mkdir()
    _policy().save(tmp_path / "old")
    assert DecisionPolicy.load(tmp_path / "old").monitoring is None


@pytest.mark.real_data
def test_the_detector_refuses_non_dermoscopy_and_keeps_real_lesions(real_data):
    """Fitted as training fits it (ImageNet features of train images, limit on validation images,
    the project's hash split), on a third of the real images to stay quick: every drawn image and
    every packaged photograph is out of scope (checks or distance), and at most 5 % of the real
    test split's lesions are (measured here: 2 of 108)."""
    from components.core import settings
    from components.core.data.dataset.split import side_number
    from components.core.data.images import decode_image
    from components.core.decision.features import imagenet_features
    from tests.support.drawn_images import package_photographs

    size = settings.IMAGE_SIZE

    def pixels(files) -> np.ndarray:
        return np.stack([decode_image(f.read_bytes(), size) for f in files])

    train_files = sorted(real_data.glob("train/*/*.jpg"))
    val = [
        f
        for f in train_files
        if side_number(f.relative_to(real_data / "train").as_posix(), settings.SEED) < settings.VAL_FRACTION
    ]
    train = sorted(set(train_files) - set(val))
    test = sorted(real_data.glob("test/*/*.jpg"))
    scope = ScopeModel.fit(imagenet_features(pixels(train[::3])), imagenet_features(pixels(val[::3])), 0.01)
    lesions = scope.scores(imagenet_features(pixels(test[::3])))
    assert np.mean(lesions > 1) <= 0.05
    others = {
        **{k: v for k, v in drawn(size).items()},
        **{k: decode_image(v, size) for k, v in package_photographs().items()},
    }
    batch = np.stack(list(others.values()))
    scores = scope.scores(imagenet_features(batch))
    kept = [name for (name, img), s in zip(others.items(), scores) if s <= 1 and not image_checks.image_problems(img)]
    assert kept == []
