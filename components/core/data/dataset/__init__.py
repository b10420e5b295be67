"""The data set: raw layout, labels, the train/validation split, checks and compact uint8 splits.

One module per job:

- ``layout``: the raw layout ``<root>/{train,test}/{benign,malignant}/<name>.jpg``, splits and
  labels from the folder names, the listing's fingerprint, and :class:`DataError`;
- ``split``: the train/validation split decision (:func:`hash_split`: by the hash of each key, stable as data grows);
- ``shards``: preprocessed splits on disk (uint8 ``.npy`` shards, manifest, checksums, the atomic
  commit) and reading them back (:class:`SplitArrays`, :func:`open_splits`);
- ``checks``: the bad-file rule, empty classes, duplicates and leakage, class balance;
- ``preprocessing``: :func:`preprocess`, the run that ties them together, and its report.

The names below are what the rest of the code imports (``from components.core.data.dataset import ...``).
"""

from components.core.data.dataset.checks import (
    IMBALANCE_WARN_RATIO,
    class_balance,
    find_duplicates,
    leakage_groups,
)
from components.core.data.dataset.layout import RAW_SPLITS, DataError, RawImage, RawScan, label_of, scan_raw
from components.core.data.dataset.preprocessing import PreprocessReport, preprocess
from components.core.data.dataset.shards import (
    DEFAULT_SHARD_SIZE,
    FORMAT,
    OUTPUT_SPLITS,
    SplitArrays,
    SplitReport,
    open_splits,
)
from components.core.data.dataset.split import hash_split, side_number
from components.core.settings import CLASSES

__all__ = [
    "CLASSES",
    "DEFAULT_SHARD_SIZE",
    "FORMAT",
    "IMBALANCE_WARN_RATIO",
    "OUTPUT_SPLITS",
    "RAW_SPLITS",
    "DataError",
    "PreprocessReport",
    "RawImage",
    "RawScan",
    "SplitArrays",
    "SplitReport",
    "class_balance",
    "find_duplicates",
    "label_of",
    "leakage_groups",
    "open_splits",
    "preprocess",
    "scan_raw",
    "hash_split",
    "side_number",
]
