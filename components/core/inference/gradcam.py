"""Grad-CAM: which part of the image drove p(malignant) (Selvaraju et al., 2017).

The heatmap is the ReLU of the last convolutional feature map weighted by the mean gradient
of the model's output with respect to each of its channels, scaled to 0-1 and laid over the
image. It works for every family in :mod:`components.core.modeling.models`:

* the basic CNN: the feature map is a layer of the model itself;
* keras.applications backbones (ResNet50, EfficientNet, MobileNetV3) are nested sub-models
  whose own output is already pooled, so the search goes inside them.

"Last 4D feature map" means the last layer, in graph order, whose output is
``(batch, h, w, channels)`` with a spatial grid bigger than 1x1 and that is not a pooling
layer. Our models are a straight chain at the top level (input -> resize -> [augmentation]
-> backbone -> dropout -> dense), so the forward pass walks the top-level layers in order
and, at the layer that holds the feature map, takes both the feature map and the output.

An ensemble (modeling/ensemble.py) is explained by the mean of its members' heat maps, each
scaled to 0-1 and brought to the largest member's grid first (:func:`for_model` picks the kind).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

_NOT_FEATURES = ("Pooling", "Flatten", "Reshape", "Dropout", "ZeroPadding", "Cropping")


@dataclass
class FeatureTarget:
    """Where the feature map lives: ``top`` is the top-level layer that contains it (the layer
    itself, or the nested sub-model), ``inner`` the layer inside ``top`` (or ``top`` itself)."""

    top: object
    inner: object

    @property
    def name(self) -> str:
        return self.inner.name if self.inner is self.top else f"{self.top.name}/{self.inner.name}"


def _is_feature_map(layer) -> bool:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False  # a layer used more than once, or never built
    if len(shape) != 4 or any(h in type(layer).__name__ for h in _NOT_FEATURES):
        return False
    h, w = shape[1], shape[2]
    return h is None or w is None or h * w > 1


def find_feature_target(model) -> FeatureTarget:
    """The last 4D convolutional feature map of ``model``, looking inside nested sub-models."""
    for layer in reversed(model.layers):
        if hasattr(layer, "layers") and layer.layers:  # a nested model (a backbone) or a Sequential
            for inner in reversed(layer.layers):
                if _is_feature_map(inner):
                    return FeatureTarget(top=layer, inner=inner)
        if _is_feature_map(layer):
            return FeatureTarget(top=layer, inner=layer)
    raise ValueError(f"model {model.name!r} has no 4D convolutional feature map for Grad-CAM")


class GradCam:
    """Build once per model (finding the layer and wiring the sub-model costs a little), then call."""

    def __init__(self, model):
        import keras

        from components.core.modeling.models import without_tta

        # Grad-CAM explains the plain view: the flip-averaging wrapper is not a straight chain.
        model = without_tta(model)
        self.model = model
        self.target = find_feature_target(model)
        top = self.target.top
        # A nested backbone answers (feature map, its own output) in one pass of its own graph.
        self._top_with_features = (
            None if top is self.target.inner else keras.Model(top.inputs, [self.target.inner.output, top.output])
        )
        self._check_chain()

    def _check_chain(self) -> None:
        """The top level must be a straight chain, or walking its layers in order would be wrong."""
        for layer in self.model.layers[1:]:
            nodes = [n for n in getattr(layer, "_inbound_nodes", []) if n is not None]
            if len(nodes) > 1 or (nodes and len(nodes[0].input_tensors) != 1):
                raise ValueError(f"Grad-CAM expects a chain of layers; {layer.name!r} has several inputs")

    def heatmap(self, pixels: np.ndarray) -> tuple[np.ndarray, float]:
        """``pixels`` uint8 ``(h, w, 3)`` -> (heatmap ``(fh, fw)`` float32 in 0-1, p(malignant))."""
        import tensorflow as tf

        x = tf.convert_to_tensor(pixels[None], dtype=tf.uint8)
        with tf.GradientTape() as tape:
            features = None
            for layer in self.model.layers[1:]:  # [0] is the InputLayer
                if layer is self.target.top:
                    if self._top_with_features is not None:
                        features, x = self._top_with_features(x, training=False)
                    else:
                        x = layer(x, training=False)
                        features = x
                else:
                    x = layer(x, training=False)
            score = tf.reshape(x, [-1])[0]
        grads = tape.gradient(score, features)
        if grads is None:
            raise RuntimeError(f"no gradient from the output to {self.target.name}")
        weights = tf.reduce_mean(grads, axis=(0, 1, 2))  # one weight per channel
        cam = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1)).numpy().astype(np.float32)
        peak = float(cam.max())
        cam = cam / peak if peak > 0 else np.zeros_like(cam)
        return cam, float(score.numpy())


@dataclass
class _Members:
    name: str


class EnsembleGradCam:
    """Grad-CAM of an averaging ensemble: its members' heat maps, averaged; p is the ensemble's."""

    def __init__(self, model, members: list):
        self.model = model
        self.parts = [GradCam(m) for m in members]
        self.target = _Members(" + ".join(f"{m.name}/{p.target.name}" for m, p in zip(members, self.parts)))

    def heatmap(self, pixels: np.ndarray) -> tuple[np.ndarray, float]:
        import tensorflow as tf

        heats = [part.heatmap(pixels)[0] for part in self.parts]
        h, w = max(x.shape[0] for x in heats), max(x.shape[1] for x in heats)
        grids = [tf.image.resize(x[..., None], (h, w)).numpy()[..., 0] if x.shape != (h, w) else x for x in heats]
        cam = np.mean(grids, axis=0).astype(np.float32)
        peak = float(cam.max())
        p = float(np.asarray(self.model(pixels[None], training=False)).reshape(-1)[0])
        return (cam / peak if peak > 0 else np.zeros_like(cam)), p


def for_model(model):
    """The explainer for ``model``: :class:`GradCam`, or :class:`EnsembleGradCam` for an ensemble."""
    from components.core.modeling.ensemble import members_of

    members = members_of(model)
    return EnsembleGradCam(model, members) if members else GradCam(model)


def colorize(heat: np.ndarray) -> np.ndarray:
    """0-1 heat -> uint8 RGB with a jet-like colour map (blue = low, red = high)."""
    h = np.clip(heat, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * h - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * h - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * h - 1), 0, 1)
    return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Resize ``heat`` to ``image`` (uint8 ``(h, w, 3)``) and blend its colours over it."""
    from PIL import Image

    h, w = image.shape[:2]
    up = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR))
    colours = colorize(up.astype(np.float32) / 255.0).astype(np.float32)
    # Stronger where the model looked, so low-attention regions keep the original image.
    a = (alpha * (0.35 + 0.65 * up.astype(np.float32) / 255.0))[..., None]
    return np.clip(image.astype(np.float32) * (1 - a) + colours * a, 0, 255).astype(np.uint8)


def to_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
