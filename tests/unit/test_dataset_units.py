"""Unit tests of the data set's pure pieces, with expected values worked out by hand:
the label rule, the hash split, duplicates and leakage, class balance, the bad-file rule."""

import random

import pytest

from components.core.data.dataset import (
    DataError,
    RawImage,
    class_balance,
    find_duplicates,
    hash_split,
    label_of,
    leakage_groups,
    side_number,
)
from components.core.data.dataset.checks import check_bad_fraction, imbalance_warnings


def _raw(benign: int, malignant: int) -> list[RawImage]:
    items = [RawImage(f"/raw/train/benign/{i:02d}.jpg", f"train/benign/{i:02d}.jpg", "train", 0) for i in range(benign)]
    items += [
        RawImage(f"/raw/train/malignant/{i:02d}.jpg", f"train/malignant/{i:02d}.jpg", "train", 1)
        for i in range(malignant)
    ]
    return items


def _counts(items: list[RawImage]) -> tuple[int, int]:
    return sum(i.label == 0 for i in items), sum(i.label == 1 for i in items)


# --- labels -------------------------------------------------------------------------------------


def test_label_of_benign_is_0_malignant_is_1():
    assert label_of("benign") == 0
    assert label_of("malignant") == 1
    with pytest.raises(ValueError):
        label_of("melanoma")


# --- the train/validation split (more in tests/unit/test_dataset_split.py) ------------------------------


def test_hash_split_side_is_a_function_of_seed_and_key_only():
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"42:train/benign/07.jpg").digest()[:8], "big") / 2**64
    assert side_number("train/benign/07.jpg", 42) == expected
    assert side_number("train/benign/07.jpg", 43) != expected


def test_hash_split_is_order_independent_and_keeps_every_image_once():
    items = _raw(60, 40)
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    first = hash_split(items, 0.2, seed=7)
    assert hash_split(shuffled, 0.2, seed=7) == first
    assert sorted(i.relpath for i in first[0] + first[1]) == sorted(i.relpath for i in items)
    assert [i.relpath for i in first[1]] == sorted(i.relpath for i in first[1])  # both halves come back sorted
    # Each image is on the side its own number says (no class here is near the tiny-class guard).
    assert {i.relpath for i in first[1]} == {i.relpath for i in items if side_number(i.relpath, 7) < 0.2}


def test_a_tiny_class_keeps_one_image_on_each_side():
    # 2 malignant images whose numbers may both fall on one side: one crosses over, the lowest to val.
    train, val = hash_split(_raw(0, 2), 0.15, seed=0)
    assert len(train) == len(val) == 1
    low = min(_raw(0, 2), key=lambda i: side_number(i.relpath, 0))
    assert val == [low]
    assert hash_split(_raw(0, 1), 0.15, seed=0)[1] in ([], _raw(0, 1))  # one image: no guard possible


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_hash_split_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match="val_fraction must be between 0 and 1"):
        hash_split(_raw(4, 4), fraction, seed=0)


# --- duplicates and leakage -----------------------------------------------------------------------

SOURCES = {
    "train": [
        {"key": "train/benign/a.jpg", "sha1": "aaa"},
        {"key": "train/benign/b.jpg", "sha1": "bbb"},
        {"key": "train/malignant/c.jpg", "sha1": "ccc"},
        {"key": "train/malignant/c2.jpg", "sha1": "ccc"},  # same bytes inside train
    ],
    "val": [{"key": "train/benign/d.jpg", "sha1": "ddd"}],
    "test": [
        {"key": "test/benign/x.jpg", "sha1": "aaa"},  # same bytes as train/benign/a.jpg
        {"key": "test/malignant/y.jpg", "sha1": "yyy"},
    ],
}
CROSS = {"sha1": "aaa", "keys": ["test/benign/x.jpg", "train/benign/a.jpg"], "splits": ["test", "train"]}
WITHIN = {"sha1": "ccc", "keys": ["train/malignant/c.jpg", "train/malignant/c2.jpg"], "splits": ["train"]}


def test_find_duplicates_returns_exactly_the_groups_of_identical_bytes():
    assert find_duplicates(SOURCES) == [CROSS, WITHIN]  # ordered by first key
    assert find_duplicates({"train": SOURCES["train"][:2], "test": SOURCES["test"][1:]}) == []


def test_leakage_is_a_group_joining_test_with_train_or_val():
    assert leakage_groups([CROSS, WITHIN]) == [CROSS]
    train_val = {"sha1": "e", "keys": ["train/benign/1.jpg", "train/benign/2.jpg"], "splits": ["train", "val"]}
    val_test = {"sha1": "f", "keys": ["test/benign/3.jpg", "train/benign/4.jpg"], "splits": ["test", "val"]}
    test_only = {"sha1": "g", "keys": ["test/benign/5.jpg", "test/benign/6.jpg"], "splits": ["test"]}
    assert leakage_groups([train_val, val_test, test_only]) == [val_test]


# --- class balance --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts, expected",
    [
        ({"benign": 30, "malignant": 10}, {"malignant_fraction": 0.25, "ratio": 3.0, "majority": "benign"}),
        ({"benign": 10, "malignant": 30}, {"malignant_fraction": 0.75, "ratio": 3.0, "majority": "malignant"}),
        ({"benign": 2, "malignant": 1}, {"malignant_fraction": 0.3333, "ratio": 2.0, "majority": "benign"}),
        ({"benign": 5, "malignant": 5}, {"malignant_fraction": 0.5, "ratio": 1.0, "majority": "benign"}),
        ({"benign": 5, "malignant": 0}, {"malignant_fraction": 0.0, "ratio": None, "majority": "benign"}),
        ({"benign": 0, "malignant": 0}, {"malignant_fraction": 0.0, "ratio": None, "majority": None}),
    ],
)
def test_class_balance(counts, expected):
    assert class_balance(counts) == expected


def test_imbalance_warns_above_1_5_to_1_and_for_an_empty_class():
    balance = {
        "train": {"malignant_fraction": 0.4, "ratio": 1.5, "majority": "benign"},  # at the limit: no warning
        "val": {"malignant_fraction": 0.0, "ratio": None, "majority": "benign"},
        "test": {"malignant_fraction": 0.25, "ratio": 3.0, "majority": "benign"},
    }
    assert imbalance_warnings(balance) == [
        "class imbalance in val: benign outnumbers the other class None to 1 (malignant fraction 0.0%)",
        "class imbalance in test: benign outnumbers the other class 3.0 to 1 (malignant fraction 25.0%)",
    ]


# --- the bad-file rule ------------------------------------------------------------------------------


def test_bad_fraction_at_the_limit_passes_above_it_fails_naming_the_files():
    one = [{"key": "train/benign/bad.jpg", "reason": "empty file"}]
    check_bad_fraction("s3://b/raw", one, 100, 0.01)  # 1 % is not more than 1 %
    check_bad_fraction("s3://b/raw", [], 0, 0.0)  # nothing listed: nothing to judge
    two = one + [{"key": "test/malignant/bad.png", "reason": "not an image"}]
    with pytest.raises(DataError) as info:
        check_bad_fraction("s3://b/raw", two, 100, 0.01)
    assert str(info.value) == (
        "s3://b/raw: 2 of 100 files are unusable (2.0% > max_bad_fraction 1.0%): "
        "train/benign/bad.jpg, test/malignant/bad.png. Fix or remove them, or raise --max-bad-fraction."
    )
