"""A loaded classifier: one model load, then predictions on raw image bytes.

Used by ``skin-cancer predict`` and the inference server. The model comes from the
MLflow registry (``models:/name@alias``, ``models:/name/3``, ``runs:/...``) or from a
directory holding ``model.keras`` and ``model.json`` (the pipeline's Model artifact), local
or in S3 (``s3://bucket/prefix``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core.settings import CLASSES
from components.core.images import decode_image


class ModelMetadataError(ValueError):
    """A model lacks what decides a diagnosis (its threshold, its input size): it is refused."""


def decision_settings(meta: dict | None, model_ref: str) -> tuple[float, int]:
    """(threshold, image size) stored with a model. No default is ever assumed: the threshold
    was chosen on validation data for malignant recall, and a silent 0.5 would be a clinical error."""
    meta = meta or {}
    missing = [key for key in ("threshold", "image_size") if meta.get(key) in (None, "")]
    if missing:
        raise ModelMetadataError(
            f"{model_ref}: the model's metadata has no {' and no '.join(missing)}, so it cannot decide a "
            "diagnosis; use a model registered by this pipeline (it stores both), or log them with the model")
    return float(meta["threshold"]), int(meta["image_size"])


@dataclass
class Predictor:
    model: object
    threshold: float
    image_size: int
    model_name: str
    model_version: str

    @classmethod
    def load(cls, model_uri: str) -> "Predictor":
        if Path(model_uri).is_dir():
            return cls._load_dir(Path(model_uri))
        if model_uri.startswith("minio://"):
            # KFP's own object store: not necessarily the store AWS_ENDPOINT_URL points at.
            raise ValueError(f"{model_uri}: a Model artifact in Kubeflow Pipelines' own store; give its s3:// "
                             "URI with AWS_ENDPOINT_URL set to that store, or serve from the registry (models:/...)")
        if model_uri.startswith("s3://"):
            return cls._load_s3_dir(model_uri)
        import mlflow

        threshold, image_size = decision_settings(mlflow.models.get_model_info(model_uri).metadata, model_uri)
        name, version = _resolve_registered(model_uri)
        return cls(
            model=mlflow.tensorflow.load_model(model_uri),
            threshold=threshold,
            image_size=image_size,
            model_name=name,
            model_version=version,
        )

    @classmethod
    def _load_dir(cls, path: Path) -> "Predictor":
        import keras

        meta = json.loads((path / "model.json").read_text())
        threshold, image_size = decision_settings(meta, str(path / "model.json"))
        return cls(
            model=keras.saving.load_model(path / "model.keras"),
            threshold=threshold,
            image_size=image_size,
            model_name=meta.get("name", meta.get("family", "model")),
            model_version=str(meta.get("version", meta.get("mlflow_run_id", ""))),
        )

    @classmethod
    def _load_s3_dir(cls, uri: str) -> "Predictor":
        """Copy ``model.keras`` and ``model.json`` from an S3 Model artifact, then load them."""
        import tempfile

        from components.core import storage

        with tempfile.TemporaryDirectory(prefix="skin-cancer-model-") as tmp:
            for name in ("model.json", "model.keras"):
                Path(tmp, name).write_bytes(storage.read_bytes(storage.join(uri, name)))
            return cls._load_dir(Path(tmp))

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """p(malignant) for a uint8 batch ``(n, h, w, 3)``."""
        return np.asarray(self.model(images, training=False)).reshape(-1).astype(float)

    def label_for(self, p: float) -> str:
        return CLASSES[int(p >= self.threshold)]

    def predict_bytes(self, data: bytes) -> dict:
        """Decode with the same decoder as training, then classify at the stored threshold."""
        pixels = decode_image(data, self.image_size)
        p = float(self.predict_arrays(pixels[None])[0])
        return {
            "label": self.label_for(p),
            "p_malignant": p,
            "threshold": self.threshold,
            "model_name": self.model_name,
            "model_version": self.model_version,
        }


def _resolve_registered(model_uri: str) -> tuple[str, str]:
    """(registered name, version) for ``models:/name@alias`` or ``models:/name/version``."""
    m = re.match(r"^models:/([^/@]+)(?:@([^/]+)|/(\d+))$", model_uri)
    if not m:
        return model_uri, ""
    name, alias, version = m.groups()
    if alias:
        from mlflow import MlflowClient

        version = MlflowClient().get_model_version_by_alias(name, alias).version
    return name, str(version)
