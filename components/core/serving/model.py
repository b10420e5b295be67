"""The model as the server holds it: a loaded :class:`~components.core.predictor.Predictor` plus
a lock, one traced forward pass, V2 metadata and Grad-CAM (:class:`ServedModel`).

Model calls are serialised by the lock: Keras models are not documented as thread-safe, and
TensorFlow already uses every core inside one call. The model runs as one traced graph
(:func:`compiled_forward`), not op by op from Python."""

import threading

import numpy as np

from components.core.images import BadImage, decode_image
from components.core.serving.config import ServingSettings
from components.core.serving.protocol import InputError
from components.core.settings import CLASSES

DISPLAY_SIZE = 320  # side of the Grad-CAM picture


def compiled_forward(model):
    """The model's forward pass as one traced TensorFlow graph, for any batch and image size.

    Calling a Keras model eagerly dispatches every op from Python: ~45 ms a call for the small
    test model, against ~1.5 ms for the same graph traced once (same probabilities). Under load
    the model lock makes that per-call cost the server's throughput limit."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.uint8)
    return tf.function(lambda images: model(images, training=False), input_signature=[spec], autograph=False)


class ServedModel:
    """The Predictor plus what serving adds: a lock, batching, V2 metadata and Grad-CAM."""

    def __init__(self, predictor, settings: ServingSettings):
        self.predictor = predictor
        self.settings = settings
        self.name = settings.model_name or predictor.model_name
        self.version = str(settings.model_version or predictor.model_version or "")
        self._lock = threading.Lock()
        self._gradcam = None
        self._forward = None

    def require(self, name: str, version: str | None = None) -> None:
        """Raise a 404 :class:`InputError` unless this is model ``name`` (and ``version``, if given)."""
        if name != self.name:
            raise InputError(f"model {name!r} is not served here; this server serves {self.name!r}", 404)
        if version is not None and version != self.version:
            raise InputError(f"model {name!r} version {version!r} is not served here; "
                             f"this server serves version {self.version!r}", 404)

    def decode(self, data: bytes, size: int | None = None) -> np.ndarray:
        try:
            return decode_image(data, size or self.predictor.image_size, max_pixels=self.settings.max_pixels)
        except BadImage as err:
            raise InputError(str(err)) from err

    def warm_up(self) -> None:
        """Trace the graph now, so the first request does not pay for it."""
        size = self.predictor.image_size
        self.predict_pixels(np.zeros((1, size, size, 3), np.uint8))

    def predict_pixels(self, batch: np.ndarray) -> list[dict]:
        """uint8 ``(n, h, w, 3)`` -> one ``{"label", "p_malignant"}`` per image."""
        with self._lock:
            if self._forward is None:
                self._forward = compiled_forward(self.predictor.model)
            probs = np.asarray(self._forward(batch)).reshape(-1).astype(float)
        out = []
        for p in probs:
            p = float(p)
            if not np.isfinite(p) or not 0.0 <= p <= 1.0:
                raise RuntimeError(f"model produced an invalid probability {p!r}")
            out.append({"label": self.predictor.label_for(p), "p_malignant": p})
        return out

    def predict_input(self, datatype: str, values) -> list[dict]:
        """A parsed V2 input: image files (``BYTES``, decoded here) or a uint8 pixel array (``UINT8``)."""
        batch = values if datatype == "UINT8" else np.stack([self.decode(v) for v in values])
        return self.predict_pixels(batch)

    def identity(self) -> dict:
        return {"model_name": self.name, "model_version": self.version}

    def explain_png(self, data: bytes) -> tuple[bytes, float, str]:
        """Grad-CAM over the image as the model sees it (square-resized): (PNG, p, layer name).

        ``p`` is the served probability, the same number /predict and V2 give for this image
        (the mean over the flipped views); the heatmap explains the unflipped view, the one a
        person looks at."""
        from components.core import gradcam

        pixels = self.decode(data)
        display = self.decode(data, DISPLAY_SIZE)
        p = self.predict_pixels(pixels[None])[0]["p_malignant"]
        with self._lock:
            if self._gradcam is None:
                self._gradcam = gradcam.GradCam(self.predictor.model)
            heat, _ = self._gradcam.heatmap(pixels)
        return gradcam.to_png(gradcam.overlay(display, heat)), p, self._gradcam.target.name

    def metadata(self) -> dict:
        """V2 model metadata."""
        return {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": "tensorflow_keras",
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [-1],
                 "parameters": {"content": "JPEG or PNG file; base64 in JSON, raw with binary data"}},
                {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3],
                 "parameters": {"content": "RGB pixels, any height and width"}},
            ],
            "outputs": [
                {"name": "p_malignant", "datatype": "FP32", "shape": [-1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
            ],
            "parameters": {"threshold": self.predictor.threshold, "image_size": self.predictor.image_size,
                           "classes": list(CLASSES)},
        }
