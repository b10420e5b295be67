"""Promotion against an existing champion, on a real `mlflow server`, with probe models whose
accuracy is known by hand (tests/support/probe_data.py): no training, seconds per registration.

- better than the champion -> @champion; worse -> @challenger, and the champion stays;
- better on all of validation but worse on the validation images the champion never trained
  on -> @challenger (the champion's own training images flatter it, so they are left out).
"""

from __future__ import annotations

import uuid

import pytest

from components.core.data.dataset import SplitArrays
from components.core.registry import tracking, versions
from components.core.reporting import promotion_report
from tests.support.probe_data import linear_model, log_model_run, uniform, write_split
from tests.support.reliability_support import PROBE_MODELS, write_probe_splits

LOW, HIGH = 50, 200  # a channel mean of 50/255 reads "malignant" to a probe model, 200/255 "benign"


def reads(channel: int):
    """A probe model that calls an image malignant when ``channel`` is LOW: sigmoid(-20 x + 10)."""
    weights = [0.0, 0.0, 0.0]
    weights[channel] = -20.0
    return linear_model(tuple(weights), 10.0, name=f"reads{channel}")


@pytest.fixture(scope="module")
def experiment(mlflow_server):
    yield tracking.setup(mlflow_server, "test-promotion")


@pytest.fixture(scope="module")
def probe_splits(tmp_path_factory):
    """tests/support/reliability_support.py's probe splits: channel R gives the label, G agrees with it for
    7 of the 10 images of each class, B is constant."""
    paths = write_probe_splits(tmp_path_factory.mktemp("probe"))
    return SplitArrays(paths["val"]), SplitArrays(paths["test"])


def test_a_better_model_takes_over_and_a_worse_one_becomes_challenger(experiment, probe_splits):
    from tests.support.reliability_support import probe_model

    val, test = probe_splits
    name = f"promotion-{uuid.uuid4().hex[:6]}"
    # C says benign to everything: accuracy 10/20; A reads R: 20/20; B reads G: 14/20.
    assert set(PROBE_MODELS) == {"A", "B", "C"}
    c, a, b = (log_model_run(probe_model(k), experiment, f"probe-{k}", image_size=16) for k in "CAB")

    first = versions.register_winner(c, name, val, test, {})
    assert (first.version, first.alias, first.champion_changed, first.previous_champion) == (
        "1",
        "champion",
        True,
        None,
    )

    better = versions.register_winner(a, name, val, test, {})
    assert (better.version, better.alias, better.champion_changed, better.champion_version) == (
        "2",
        "champion",
        True,
        "2",
    )
    compared = better.previous_champion["comparison"]
    assert better.previous_champion["version"] == "1"
    # Probe runs record no training set, so all 20 validation images are compared.
    assert (compared["decided"], compared["compared_on"], compared["champion_training_set"]) == (True, 20, "unknown")
    assert (compared["mine"]["accuracy"], compared["theirs"]["accuracy"]) == (1.0, 0.5)

    worse = versions.register_winner(b, name, val, test, {})
    assert (worse.version, worse.alias, worse.champion_changed, worse.champion_version) == (
        "3",
        "challenger",
        False,
        "2",
    )
    compared = worse.previous_champion["comparison"]
    assert (compared["mine"]["accuracy"], compared["theirs"]["accuracy"]) == (0.7, 1.0)
    assert promotion_report.decision(worse) == (
        "Champion version 2 stayed and version 3 is @challenger: the champion is "
        "better on the validation images it never trained on"
    )

    from mlflow import MlflowClient

    client = MlflowClient()
    assert client.get_model_version_by_alias(name, versions.CHAMPION).version == "2"
    assert client.get_model_version_by_alias(name, versions.CHALLENGER).version == "3"


def unseen_trap(root) -> tuple[str, str, list[str]]:
    """Validation where G (the champion's channel) gives the label on the 10 images the champion
    never saw and the opposite on the 10 it trained on, and B (the newcomer's channel) gives the
    label on 3 of 5 unseen images per class and on all 10 seen ones. Pixel [0, 0] of R (read by
    neither) keeps every file's bytes apart. Returns (val path, test path, seen keys)."""
    images = []
    n = 0
    for label in (0, 1):
        right, wrong = (HIGH, LOW) if label == 0 else (LOW, HIGH)
        for i in range(5):
            b_right = i < 3
            images.append((f"unseen-{label}-{i}", uniform((0, right, right if b_right else wrong), tag=(0, n)), label))
            n += 1
        for i in range(5):
            images.append((f"seen-{label}-{i}", uniform((0, wrong, right), tag=(0, n)), label))
            n += 1
    val = write_split(root, "val", images)
    test = write_split(root, "test", images)
    return val, test, [name for name, _, _ in images if name.startswith("seen")]


def test_better_on_all_of_validation_but_worse_on_the_unseen_images_stays_challenger(experiment, tmp_path):
    val_path, test_path, seen_names = unseen_trap(tmp_path)
    val, test = SplitArrays(val_path), SplitArrays(test_path)
    seen_sha1 = [s["sha1"] for s in val.manifest["sources"] if s["key"].split("/")[-1][:-4] in seen_names]
    assert len(seen_sha1) == 10
    name = f"unseen-trap-{uuid.uuid4().hex[:6]}"

    champion = log_model_run(reads(1), experiment, "reads-G", trained_on=seen_sha1)
    assert versions.register_winner(champion, name, val, test, {}).alias == "champion"
    newcomer = log_model_run(reads(2), experiment, "reads-B", trained_on=[])
    reg = versions.register_winner(newcomer, name, val, test, {})

    assert (reg.alias, reg.champion_changed, reg.champion_version) == ("challenger", False, "1")
    # On all 20 validation images the newcomer is better: 16/20 against the champion's 10/20 ...
    assert versions.evaluate_model_uri(reg.model_uri, val, test)["val"]["accuracy"] == 0.8
    assert reg.previous_champion["val"]["accuracy"] == 0.5
    # ... but on the 10 the champion never trained on it is worse (6/10 against 10/10).
    compared = reg.previous_champion["comparison"]
    assert (
        compared["decided"],
        compared["compared_on"],
        compared["validation_images"],
        compared["champion_training_set"],
    ) == (True, 10, 20, "recorded")
    assert (compared["mine"]["accuracy"], compared["theirs"]["accuracy"]) == (0.6, 1.0)
