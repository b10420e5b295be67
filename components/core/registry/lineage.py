"""Where a model came from, in MLflow's own terms: datasets with a source and a digest.

A training run logs four MLflow datasets (``mlflow.log_inputs``), shown in the run's
"Datasets used" and in the dataset view with their source, digest, schema and profile:

- ``skin-cancer-raw`` (context ``source``): the raw images' URI (credentials removed), digest =
  the data fingerprint (keys and ETags of every raw image, what ``fingerprint_data`` computes);
- ``skin-cancer-train`` / ``-val`` / ``-test`` (contexts ``training``, ``validation``, ``test``):
  the preprocessed KFP artifacts' URIs (``s3://`` on a cluster), digest = a hash of the split's own
  shard and label checksums; the profile names the data fingerprint they were made from.

Why not the fingerprint as every split's digest: MLflow keeps one dataset per (name, digest) in
an experiment and reuses the first one logged, so splits made from the same raw data with another
seed, validation fraction or image size would show the first run's source and counts. The split's
content digest changes exactly when its content does.

The registered model version gets the same as tags (:func:`version_tags`), plus the KFP run and
the images the compiled pipeline runs.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any

from components.core import settings
from components.core.redaction import redact

RAW_DATASET = "skin-cancer-raw"
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def dataset_name(split: str) -> str:
    return f"skin-cancer-{split}"


def pipeline_images(refs: str) -> str:
    """The images the compiled pipeline's tasks run (``train=REF`` from the training step, the
    selection step adds ``runtime=REF``: :func:`with_runtime_image`), on a cluster; empty elsewhere:
    under ``kfp.local`` the tasks run in the local Python environment, whatever images the pipeline
    names."""
    return refs if settings.run_id() else ""  # the run id comes only from a cluster pod's label


def with_runtime_image(described: dict | None, runtime_image: str) -> dict | None:
    """``described`` naming the runtime image too (``runtime=REF,train=REF``). The training step
    records only its own image: the runtime image as a training input would be in KFP's cache key
    and retrain every model when only that image changes. The selection step runs in the runtime
    image and is never cached, so it adds it. Nothing is added where no image was recorded (a
    ``kfp.local`` run: see :func:`pipeline_images`) or one is named already."""
    images = (described or {}).get("images") or ""
    if not runtime_image or not images or images.startswith("runtime="):
        return described
    return {**described, "images": f"runtime={runtime_image},{images}"}


def split_digest(manifest: dict) -> str:
    """16 hex digits over a preprocessed split's checksums (every shard's and the labels')."""
    parts = [
        manifest.get("labels_sha256", ""),
        *(s.get("sha256", "") for s in manifest.get("shards", [])),
        str(manifest.get("image_size", "")),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _source(uri: str):
    """MLflow's dataset source for ``uri`` (s3, gs, local, http ...); a plain URI source for the
    schemes it has none for (KFP's own ``minio://`` store)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "can be interpreted in multiple ways": both are local
            return resolve_dataset_source(uri)
    except Exception:
        return _uri_source(uri)


def _uri_source(uri: str):
    from mlflow.data.dataset_source import DatasetSource

    class UriDatasetSource(DatasetSource):
        """A location MLflow cannot read, recorded as it is."""

        def __init__(self, uri: str):
            self.uri = uri

        @staticmethod
        def _get_source_type() -> str:
            return "uri"

        def load(self, **kwargs):
            raise NotImplementedError(f"MLflow cannot load {self.uri}")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any):
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict):
            return cls(source_dict["uri"])

    return UriDatasetSource(uri)


def image_dataset(name: str, uri: str, digest: str, profile: dict, image_size: int | None = None):
    """An MLflow dataset that records where the images are, not the images: source, digest,
    a profile (counts, fingerprint) and, for a preprocessed split, its tensor schema."""
    import numpy as np
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types import Schema, TensorSpec

    class ImageDataset(MetaDataset):
        @property
        def profile(self):
            return profile

        def to_dict(self) -> dict[str, str]:
            out = super().to_dict()
            out["profile"] = json.dumps(profile)
            if self.schema is not None:
                out["schema"] = json.dumps(self.schema.to_dict())
            return out

    schema = None
    if image_size:
        schema = TensorDatasetSchema(
            features=Schema([TensorSpec(np.dtype(np.uint8), (-1, image_size, image_size, 3), "image")]),
            targets=Schema([TensorSpec(np.dtype(np.uint8), (-1,), "label (0 benign, 1 malignant)")]),
        )
    return ImageDataset(source=_source(uri), name=name, digest=digest, schema=schema)


def describe(
    data_uri: str, fingerprint: str, split_uris: dict[str, str], manifests: dict[str, dict], images: str = ""
) -> dict:
    """What a training run read, as plain JSON (kept in its result, small): per dataset its
    name, URI (credentials removed), digest and class counts."""
    out = {
        "data_uri": redact(data_uri) if data_uri else "",
        "data_fingerprint": fingerprint,
        "images": pipeline_images(images),
        "datasets": {},
    }
    if data_uri:
        counts = {c: sum(m.get("class_counts", {}).get(c, 0) for m in manifests.values()) for c in settings.CLASSES}
        out["datasets"]["raw"] = {
            "name": RAW_DATASET,
            "uri": out["data_uri"],
            "digest": fingerprint,
            "context": "source",
            "class_counts": counts,
        }
    for split, manifest in manifests.items():
        out["datasets"][split] = {
            "name": dataset_name(split),
            "uri": redact(split_uris.get(split, "")),
            "digest": split_digest(manifest),
            "context": CONTEXTS[split],
            "class_counts": manifest.get("class_counts", {}),
            "image_size": manifest.get("image_size"),
        }
    return out


def datasets(described: dict) -> dict[str, Any]:
    """The MLflow datasets of :func:`describe`'s result, by split (``raw`` included when known)."""
    out = {}
    for key, d in described["datasets"].items():
        counts = d.get("class_counts", {})
        profile = {"images": sum(counts.values()), **counts, "data_fingerprint": described["data_fingerprint"]}
        out[key] = image_dataset(d["name"], d["uri"], d["digest"], profile, d.get("image_size"))
    return out


def log_inputs(described: dict) -> dict[str, Any]:
    """Log :func:`describe`'s datasets as the active run's inputs; returns them by split, so
    metrics can name the dataset they were computed on."""
    import mlflow

    by_split = datasets(described)
    mlflow.log_inputs(
        datasets=list(by_split.values()),
        contexts=[described["datasets"][k]["context"] for k in by_split],
        tags_list=[None] * len(by_split),
    )
    return by_split


def version_tags(described: dict | None) -> dict[str, str]:
    """The registered version's lineage tags: the raw data, each split's URI and digest, the
    images (only on a cluster: see :func:`pipeline_images`)."""
    if not described:
        return {}
    tags = {"data_uri": described.get("data_uri", "")}
    for key, d in described.get("datasets", {}).items():
        if key != "raw":
            tags[f"dataset_{key}"] = f"{d['uri']} (digest {d['digest']})"
    tags["images"] = described.get("images") or "none recorded: a kfp.local run uses the local Python environment"
    return {k: v for k, v in tags.items() if v}
