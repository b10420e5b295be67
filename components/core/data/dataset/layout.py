"""The raw layout: where images live, which split and label each one has, and the listing's fingerprint.

Raw layout (the Kaggle "Skin Cancer: Malignant vs. Benign" layout)::

    <root>/{train,test}/{benign,malignant}/<name>.jpg
"""

from __future__ import annotations

from dataclasses import dataclass

from components.core.data import storage
from components.core.data.images import has_image_extension
from components.core.settings import CLASSES

RAW_SPLITS = ("train", "test")


class DataError(RuntimeError):
    """The data set cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class RawImage:
    uri: str
    relpath: str
    split: str
    label: int


@dataclass
class RawScan:
    data_uri: str
    images: list[RawImage]
    skipped: list[dict]
    fingerprint: str


def label_of(class_name: str) -> int:
    return CLASSES.index(class_name)


def scan_raw(data_uri: str) -> RawScan:
    """List ``data_uri``, assign splits and labels from the folder names, and check the layout."""
    objects = storage.list_objects(data_uri)
    images: list[RawImage] = []
    skipped: list[dict] = []
    seen_folders: dict[tuple[str, str], int] = {}
    for obj in objects:
        parts = obj.relpath.split("/")
        if len(parts) != 3 or parts[0] not in RAW_SPLITS or parts[1] not in CLASSES:
            continue  # READMEs and other files beside the layout are not data
        split, cls, name = parts
        seen_folders[(split, cls)] = seen_folders.get((split, cls), 0) + 1
        if not has_image_extension(name):
            skipped.append({"key": obj.relpath, "reason": "not a .jpg/.jpeg/.png file"})
            continue
        images.append(RawImage(obj.uri, obj.relpath, split, label_of(cls)))
    missing = [f"{s}/{c}" for s in RAW_SPLITS for c in CLASSES if (s, c) not in seen_folders]
    if missing:
        raise DataError(
            f"{data_uri}: missing folder(s) {', '.join(missing)}; expected the layout "
            "<root>/{train,test}/{benign,malignant}/<image>.jpg"
        )
    return RawScan(data_uri, images, skipped, storage.fingerprint(objects))
