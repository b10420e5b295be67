"""The model as the server holds it: a loaded :class:`~components.core.predictor.Predictor` plus
a lock, one traced forward pass, V2 metadata and Grad-CAM (:class:`ServedModel`).

Model calls are serialised by the lock: Keras models are not documented as thread-safe, and
TensorFlow already uses every core inside one call. The model runs as one traced graph
(:func:`compiled_forward`), not op by op from Python."""

import threading

import numpy as np

from components.core.images import BadImage, decode_image, original_size
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

    def predict_pixels(self, batch: np.ndarray, original_sizes: list | None = None) -> list[dict]:
        """uint8 ``(n, h, w, 3)`` -> one result per image (Predictor.predict_pixels: label,
        p_malignant and the decision policy's decision, refer_reason, prediction_set, ood_score)."""
        with self._lock:
            if self._forward is None:
                self._forward = compiled_forward(self.predictor.model)
            return self.predictor.predict_pixels(batch, original_sizes, forward=self._forward)

    def predict_input(self, datatype: str, values) -> list[dict]:
        """A parsed V2 input: image files (``BYTES``, decoded here) or a uint8 pixel array (``UINT8``)."""
        if datatype == "UINT8":
            return self.predict_pixels(values, [(v.shape[1], v.shape[0]) for v in values])
        return self.predict_pixels(np.stack([self.decode(v) for v in values]), [original_size(v) for v in values])

    def predict_upload(self, data: bytes) -> dict:
        """One uploaded file (/predict, the page)."""
        return self.predict_pixels(self.decode(data)[None], [original_size(data)])[0]

    def identity(self) -> dict:
        return {"model_name": self.name, "model_version": self.version}

    def explain_png(self, data: bytes) -> tuple[bytes, dict, str]:
        """Grad-CAM over the image as the model sees it (square-resized): (PNG, the prediction, layer name).

        The prediction is the one /predict and V2 give for this image (p is the mean over the
        flipped views); the heatmap explains the unflipped view, the one a person looks at. An
        image the decision policy finds out of scope gets no heatmap (422): a map over a palace
        or a blank frame would look like an explanation of a lesion."""
        from components.core import gradcam

        result = self.predict_upload(data)
        if result["refer_reason"] == "out_of_scope":
            raise InputError(result["refer_text"], 422)
        pixels = self.decode(data)
        display = self.decode(data, DISPLAY_SIZE)
        with self._lock:
            if self._gradcam is None:
                self._gradcam = gradcam.GradCam(self.predictor.model)
            heat, _ = self._gradcam.heatmap(pixels)
        return gradcam.to_png(gradcam.overlay(display, heat)), result, self._gradcam.target.name

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
                {"name": "label", "datatype": "BYTES", "shape": [-1],
                 "parameters": {"content": "benign or malignant: what the threshold alone says"}},
                {"name": "decision", "datatype": "BYTES", "shape": [-1],
                 "parameters": {"content": "benign, malignant or refer: the answer to act on"}},
                {"name": "refer_reason", "datatype": "BYTES", "shape": [-1],
                 "parameters": {"content": "out_of_scope (not a dermoscopic lesion image), uncertain "
                                           "(conformal set holds both classes), or empty when decided"}},
            ],
            "parameters": {"threshold": self.predictor.threshold, "image_size": self.predictor.image_size,
                           "classes": list(CLASSES), "decision_policy": self.predictor.policy.summary()},
        }
