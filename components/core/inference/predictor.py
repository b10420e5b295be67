"""A loaded classifier: one model load, then predictions on raw image bytes.

Used by ``skin-cancer predict`` and the inference server. The model comes from the
MLflow registry (``models:/name@alias``, ``models:/name/3``, ``runs:/...``) or from a
directory holding ``model.keras`` and ``model.json`` (the pipeline's Model artifact), local
or in S3 (``s3://bucket/prefix``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core.data.images import decode_image, original_size
from components.core.decision import POLICY_FILES, DecisionPolicy, reason_text
from components.core.settings import CLASSES

# The most images one call into TensorFlow gets (predict_arrays slices larger batches). With
# test-time augmentation each image is four flipped views through the network, so a batch of 64
# is 256 images' activations; the traced graph frees each as soon as it is used, and this bound
# keeps a large caller batch (the scoring pipeline's batch_size is a run-time parameter) from
# growing the peak past what the tasks request (issue 32, docs/scoring.md#speed-and-memory).
FORWARD_BATCH = 64


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
            "diagnosis; use a model registered by this pipeline (it stores both), or log them with the model"
        )
    return float(meta["threshold"]), int(meta["image_size"])


@dataclass
class Predictor:
    # The network is loaded on first use (``model``): what needs only the version's metadata, its
    # decision policy or its monitoring reference (the scoring report, a shard with nothing new)
    # never imports TensorFlow, 10 s and more of every such task's start.
    load_model: Callable[[], object] = field(repr=False)
    threshold: float
    image_size: int
    model_name: str
    model_version: str
    policy: DecisionPolicy  # benign / malignant / refer (components/core/decision); never absent
    run_id: str = ""  # the MLflow run that trained it, when known (batch scoring reads its evaluation)
    _model: object = field(default=None, repr=False, compare=False)
    _forward: object = field(default=None, repr=False, compare=False)

    @property
    def model(self):
        """The Keras model, loaded the first time it is asked for."""
        if self._model is None:
            self._model = self.load_model()
        return self._model

    @classmethod
    def load(cls, model_uri: str) -> "Predictor":
        if Path(model_uri).is_dir():
            return cls._load_dir(Path(model_uri))
        if model_uri.startswith("minio://"):
            # KFP's own object store: not necessarily the store AWS_ENDPOINT_URL points at.
            raise ValueError(
                f"{model_uri}: a Model artifact in Kubeflow Pipelines' own store; give its s3:// "
                "URI with AWS_ENDPOINT_URL set to that store, or serve from the registry (models:/...)"
            )
        if model_uri.startswith("s3://"):
            return cls._load_s3_dir(model_uri)
        import mlflow

        from components.core.registry import tracking

        info = mlflow.models.get_model_info(model_uri)
        threshold, image_size = decision_settings(info.metadata, model_uri)
        # The policy's files are the training run's artifacts (decision/); refused by name when absent.
        policy = DecisionPolicy.from_files(tracking.load_decision_files(info.run_id) if info.run_id else {}, model_uri)
        name, version = _resolve_registered(model_uri)
        return cls(
            load_model=lambda: mlflow.tensorflow.load_model(model_uri),
            threshold=threshold,
            image_size=image_size,
            model_name=name,
            model_version=version,
            policy=policy,
            run_id=info.run_id or "",
        )

    @classmethod
    def _load_dir(cls, path: Path, eager: bool = False) -> "Predictor":
        meta = json.loads((path / "model.json").read_text())
        threshold, image_size = decision_settings(meta, str(path / "model.json"))
        policy = DecisionPolicy.load(path)

        def load_model():
            import keras

            return keras.saving.load_model(path / "model.keras")

        predictor = cls(
            load_model=load_model,
            threshold=threshold,
            image_size=image_size,
            model_name=meta.get("name", meta.get("family", "model")),
            model_version=str(meta.get("version", meta.get("mlflow_run_id", ""))),
            policy=policy,
            run_id=str(meta.get("mlflow_run_id", "")),
        )
        if eager:  # now, while ``path`` exists
            predictor._model = load_model()
        return predictor

    @classmethod
    def _load_s3_dir(cls, uri: str) -> "Predictor":
        """Copy ``model.keras``, ``model.json`` and the decision policy from an S3 Model artifact,
        then load them."""
        import tempfile

        from components.core.data import storage

        present = {o.relpath for o in storage.list_objects(uri)}
        with tempfile.TemporaryDirectory(prefix="skin-cancer-model-") as tmp:
            for name in ("model.json", "model.keras", *POLICY_FILES):
                if name in POLICY_FILES and name not in present:
                    continue  # DecisionPolicy.load names what is missing
                Path(tmp, name).write_bytes(storage.read_bytes(storage.join(uri, name)))
            try:
                return cls._load_dir(Path(tmp), eager=True)  # the copy is deleted on return
            except ValueError as err:
                raise type(err)(str(err).replace(tmp, uri)) from None

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """p(malignant) for a uint8 batch ``(n, h, w, 3)``: the traced forward pass
        (:func:`compiled_forward`, traced on first use), at most :data:`FORWARD_BATCH` images a call.

        Not the eager Keras call: eagerly, a functional model keeps every layer's output until the
        call returns, which on the real-data champion (EfficientNet-Lite0 at 192 px, four TTA views)
        took a batch of 64 from 0.9 GB to 4.7 GB resident; the traced graph peaks at about 1.9 GB
        with the same probabilities (issue 32)."""
        images = np.asarray(images)
        if self._forward is None:
            self._forward = compiled_forward(self.model)
        out = [
            np.asarray(self._forward(np.ascontiguousarray(images[i : i + FORWARD_BATCH], dtype=np.uint8))).reshape(-1)
            for i in range(0, len(images), FORWARD_BATCH)
        ]
        return np.concatenate(out).astype(float) if out else np.zeros(0, float)

    def label_for(self, p: float) -> str:
        return CLASSES[int(p >= self.threshold)]

    def predict_pixels(
        self, pixels: np.ndarray, original_sizes: list | None = None, forward=None, imagenet: np.ndarray | None = None
    ) -> list[dict]:
        """One result per image of a uint8 batch: ``label`` and ``p_malignant`` (what the threshold
        alone says), and the decision policy's ``decision``, ``refer_reason``, ``prediction_set``,
        ``ood_score`` and ``refer_text`` (what a clinician reads; "" when decided).
        ``forward``: the model's call to use (the server's traced graph); default :meth:`predict_arrays`.
        ``imagenet``: the images' ImageNet features at model size (:meth:`imagenet_features`),
        when the caller computed them already."""
        probs = np.asarray(forward(pixels) if forward is not None else self.predict_arrays(pixels))
        probs = probs.reshape(-1).astype(float)
        bad = [p for p in probs if not np.isfinite(p) or not 0.0 <= p <= 1.0]
        if bad:
            raise RuntimeError(f"model produced an invalid probability {bad[0]!r}")
        decisions = self.policy.decide_images(self._at_model_size(pixels), probs, original_sizes, imagenet)
        return [
            {"label": self.label_for(p), "p_malignant": float(p), **d.to_dict(), "refer_text": reason_text(d)}
            for p, d in zip(probs, decisions)
        ]

    def imagenet_features(self, pixels: np.ndarray) -> np.ndarray:
        """The ImageNet features the scope detector looks at (the same as :meth:`predict_pixels`)."""
        from components.core.decision.features import imagenet_features

        return imagenet_features(self._at_model_size(pixels))

    def _at_model_size(self, pixels: np.ndarray) -> np.ndarray:
        """The scope detector's input: images as training saw them (a V2 UINT8 input may be any size;
        the same PIL bilinear resize as the decoder)."""
        size = self.image_size
        if pixels.shape[1:3] == (size, size):
            return pixels
        from PIL import Image

        return np.stack(
            [
                np.asarray(Image.fromarray(np.asarray(img, np.uint8)).resize((size, size), Image.Resampling.BILINEAR))
                for img in pixels
            ]
        )

    def predict_bytes(self, data: bytes) -> dict:
        """Decode with the same decoder as training, then decide with the stored policy."""
        pixels = decode_image(data, self.image_size)
        result = self.predict_pixels(pixels[None], [original_size(data)])[0]
        return {
            **result,
            "threshold": self.threshold,
            "model_name": self.model_name,
            "model_version": self.model_version,
        }


def compiled_forward(model):
    """The model's forward pass as one traced TensorFlow graph, for any batch and image size
    (``Predictor.predict_pixels(..., forward=)``: the server's and the serving benchmark's;
    :meth:`Predictor.predict_arrays`, batch scoring's and ``predict``'s).

    Calling a Keras model eagerly dispatches every op from Python: ~45 ms a call for the small
    test model, against ~1.5 ms for the same graph traced once (same probabilities)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.uint8)
    return tf.function(lambda images: model(images, training=False), input_signature=[spec], autograph=False)


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
