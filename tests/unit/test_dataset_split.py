"""The split as data grows: an image never changes side, and the realised fraction and class
balance stay within the stated tolerance (3 standard errors of a Bernoulli share)."""

import math

from components.core.data.dataset import RawImage, hash_split

FRACTION = 0.15


def images(prefix: str, benign: int, malignant: int) -> list[RawImage]:
    out = [
        RawImage(f"s3://b/raw/train/benign/{prefix}{i}.jpg", f"train/benign/{prefix}{i}.jpg", "train", 0)
        for i in range(benign)
    ]
    return out + [
        RawImage(f"s3://b/raw/train/malignant/{prefix}{i}.jpg", f"train/malignant/{prefix}{i}.jpg", "train", 1)
        for i in range(malignant)
    ]


def sides(items: list[RawImage]) -> dict[str, str]:
    train, val = hash_split(items, FRACTION, seed=42)
    return {i.relpath: "train" for i in train} | {i.relpath: "val" for i in val}


def within_tolerance(val_count: int, n: int) -> bool:
    return abs(val_count / n - FRACTION) <= 3 * math.sqrt(FRACTION * (1 - FRACTION) / n)


def test_adding_ten_percent_new_images_moves_no_old_image():
    old = images("", 1400, 600)
    before = sides(old)
    grown = old + images("new-", 140, 60)  # 10 % more, both classes
    after = sides(grown)
    assert {k: after[k] for k in before} == before


def test_removing_and_renaming_other_images_moves_no_image():
    old = images("", 1400, 600)
    before = sides(old)
    kept = old[::2]  # half removed
    renamed = [
        RawImage(i.uri.replace("/1", "/x1"), i.relpath.replace("/1", "/x1"), i.split, i.label) for i in old[1::4]
    ]
    after = sides(kept + renamed)
    assert {i.relpath: after[i.relpath] for i in kept} == {i.relpath: before[i.relpath] for i in kept}


def test_fraction_and_class_balance_stay_within_tolerance_as_data_grows():
    for n_benign, n_malignant in ((1400, 600), (1540, 660), (3000, 1000)):
        split = sides(images("", n_benign, n_malignant))
        for cls, n in (("benign", n_benign), ("malignant", n_malignant)):
            val = sum(1 for k, side in split.items() if f"/{cls}/" in k and side == "val")
            assert within_tolerance(val, n), (cls, n, val / n)
        total_val = sum(1 for side in split.values() if side == "val")
        assert within_tolerance(total_val, n_benign + n_malignant)
