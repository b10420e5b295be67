"""An honest champion comparison: a champion that trained on some of this run's validation
images is compared with the newcomer only on the validation images it never saw.

Run 1 splits the data with seed 1 and its model becomes @champion. Run 2 splits the same
images with seed 2, so part of run 2's validation set was run 1's training set."""

from components.core.data import dataset
from components.core.registry import selection, versions
from components.core.step_results import TrainSummary
from components.core.steps.train import run_train

TINY = {"epochs": 1, "batch_size": 16, "image_size": 32, "seed": 0, "learning_rate": 0.01}


def preprocess(raw, out, seed):
    dataset.preprocess(
        str(raw), {s: str(out / s) for s in dataset.OUTPUT_SPLITS}, image_size=32, val_fraction=0.4, seed=seed
    )
    return dataset.open_splits(*(str(out / s) for s in ("train", "val", "test")))


def train_and_register(splits, paths, uri, name):
    result = TrainSummary.from_json(
        run_train(
            {"family": "basic", "width": 4, "augment": False, "early_stopping_patience": 0},
            *paths,
            TINY,
            uri,
            "test-unseen",
            splits[0].manifest["fingerprint"],
        )
    )
    return versions.register_winner(result, name, splits[1], splits[2], {"data_fingerprint": "fp"})


def test_too_few_unseen_images_keep_the_champion_and_say_why(preprocessed):
    import numpy as np

    val = dataset.SplitArrays(str(preprocessed / "val"))
    seen = {s["sha1"] for s in val.manifest["sources"][: len(val) - 3]}  # all but 3 were trained on
    scored = {"threshold": 0.5, "val_scores": np.full(len(val), 0.7)}
    out = selection.compare_on_unseen(scored, scored, val, seen)
    assert (out["decided"], out["compared_on"]) == (False, 3)
    assert out["reason"].startswith(f"only 3 of {len(val)} validation images are unseen by the champion")
    everything = selection.compare_on_unseen(scored, scored, val, None)  # training set unknown: all of val
    assert everything["compared_on"] == len(val) and everything["champion_training_set"] == "unknown"
    assert selection.unseen_indices(val, set()).tolist() == list(range(len(val)))


def test_a_version_without_a_recorded_training_set_is_unknown_not_empty():
    class Version:
        run_id = "no-such-run"

    assert versions.trained_on(Version()) is None
