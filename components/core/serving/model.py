"""The model as KServe serves it: :class:`ServedModel`, a ``kserve.Model`` around one loaded
:class:`~components.core.inference.predictor.Predictor`.

KServe's ``ModelServer`` speaks the Open Inference Protocol (V2) over REST and gRPC and calls
``preprocess`` -> ``predict`` -> ``postprocess`` per request, timing each in its Prometheus
histograms. What is ours: ``preprocess`` checks the input tensor and decodes the images (on a
worker thread, so the event loop keeps accepting requests), ``predict`` hands them to the
adaptive batcher (:mod:`.batching`), which runs the traced forward pass and the decision policy
on the model thread, and ``postprocess`` writes the four outputs. ``/predict`` and ``/explain``
(:mod:`.app`) go through the same batcher and model thread.
"""

from __future__ import annotations

import asyncio
import struct
import uuid

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from prometheus_client import Counter, Histogram

from components.core.data.images import BadImage, decode_image, original_size
from components.core.serving.batching import AdaptiveBatcher
from components.core.serving.config import ServingSettings
from components.core.serving.inputs import InputError, check_outputs, check_tensor, image_files, pixel_array
from components.core.settings import CLASSES

DISPLAY_SIZE = 320  # side of the Grad-CAM picture

DECISIONS = Counter(
    "skin_cancer_decisions", "Images answered, by decision and refer reason", ["model_name", "decision", "refer_reason"]
)
BATCH_IMAGES = Histogram(
    "skin_cancer_batch_images",
    "Images per forward pass (adaptive batching)",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
BATCH_REQUESTS = Histogram(
    "skin_cancer_batch_requests",
    "Requests sharing one forward pass",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

OUTPUT_TEXT = {
    "p_malignant": "p(malignant), flip-averaged",
    "label": "benign or malignant: what the threshold alone says",
    "decision": "benign, malignant or refer: the answer to act on",
    "refer_reason": "out_of_scope (not a dermoscopic lesion image), uncertain (conformal set holds both "
    "classes), or empty when decided",
}


class ServedInputError(InvalidInput):
    """An :class:`~.inputs.InputError` as KServe knows it: gRPC answers INVALID_ARGUMENT with its
    message; REST keeps its HTTP status (the server's handler for this class)."""

    def __init__(self, err: InputError):
        super().__init__(str(err))
        self.status = err.status


class ServedModel(Model):
    """The Predictor plus what serving adds: input checks, batching, V2 metadata and Grad-CAM."""

    def __init__(self, predictor, settings: ServingSettings):
        super().__init__(settings.model_name or predictor.model_name)
        self.predictor = predictor
        self.settings = settings
        self.version = str(settings.model_version or predictor.model_version or "")
        self.batcher = AdaptiveBatcher(
            self._run_batch, settings.max_batch_size, settings.max_latency_ms / 1000, on_batch=self._observe_batch
        )
        self._gradcam = None

    # --- KServe's model life cycle ------------------------------------------------------------

    def load(self, warm_up: bool = True) -> bool:
        """Run the forward pass once (the predictor's traced graph, traced on first use) so the first
        request does not pay for tracing it."""
        if warm_up:
            size = self.predictor.image_size
            # not through _run_batch: a warm-up is no answer, and the decision counts stay true
            self.predictor.predict_pixels(np.zeros((1, size, size, 3), np.uint8), [None])
        self.ready = True
        return self.ready

    def validate(self, payload):
        return payload  # preprocess checked it (KServe's own check is for V1 dicts)

    async def preprocess(self, payload: InferRequest, headers: dict | None = None) -> tuple:
        """The request's one input tensor as images: (request, pixels, original sizes, outputs).
        Announced to the batcher while it is decoded; ``predict`` queues it right after (no
        await in between), so a batch being formed waits for it."""
        try:
            with self.batcher.incoming():
                return await self._prepare(payload)
        except InputError as err:
            raise ServedInputError(err) from None

    async def _prepare(self, payload: InferRequest) -> tuple:
        """Check the tensor, then decode its images on a worker thread."""
        if payload.model_version and payload.model_version != self.version:
            raise ModelNotFound(f"{self.name} version {payload.model_version}")
        if len(payload.inputs) != 1:
            raise InputError(
                f"expected exactly one input tensor (BYTES image files or UINT8 pixels), got {len(payload.inputs)}"
            )
        outputs = check_outputs([o.name for o in payload.request_outputs or []])
        tensor = payload.inputs[0]
        check_tensor(tensor.name, tensor.datatype, tensor.shape, self.settings)
        values = _tensor_values(tensor)
        loop = asyncio.get_running_loop()
        if tensor.datatype == "UINT8":
            pixels = pixel_array(tensor.name, list(tensor.shape), values)
            sizes = [(img.shape[1], img.shape[0]) for img in pixels]
        else:
            files = image_files(tensor.name, values)
            if len(files) != int(np.prod(tensor.shape)):  # shape is [n] or [n, 1] (check_tensor)
                raise InputError(
                    f"input {tensor.name!r}: shape {list(tensor.shape)} does not match the {len(files)} element(s) sent"
                )
            pixels, sizes = await loop.run_in_executor(None, self._decode_files, files)
        return payload, pixels, sizes, outputs

    async def predict(self, prepared: tuple, headers: dict | None = None) -> tuple:
        request, pixels, sizes, outputs = prepared
        return request, await self.batcher.submit(pixels, sizes), outputs

    def postprocess(self, answered: tuple, headers: dict | None = None) -> InferResponse:
        request, results, names = answered
        n = len(results)
        arrays = {
            "p_malignant": ("FP32", np.array([r["p_malignant"] for r in results], np.float32)),
            "label": ("BYTES", _bytes_array(r["label"] for r in results)),
            "decision": ("BYTES", _bytes_array(r["decision"] for r in results)),
            # a BYTES tensor has no null: a decided image's refer_reason is ""
            "refer_reason": ("BYTES", _bytes_array(r["refer_reason"] or "" for r in results)),
        }
        outputs = []
        for name in names:
            # As lists: KServe's to_rest and to_grpc both turn lists into JSON, typed contents or
            # raw bytes as the request asks (to_grpc cannot take an array when outputs go raw).
            output = InferOutput(name, [n], arrays[name][0])
            output.set_data_from_numpy(arrays[name][1], binary_data=False)
            outputs.append(output)
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            model_version=self.version or None,
            infer_outputs=outputs,
            parameters={"threshold": _number(float(self.predictor.threshold), request.from_grpc)},
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )

    def get_input_types(self) -> list[dict]:
        return [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
        ]

    def get_output_types(self) -> list[dict]:
        return [
            {"name": name, "datatype": "FP32" if name == "p_malignant" else "BYTES", "shape": [-1]}
            for name in OUTPUT_TEXT
        ]

    # --- the model thread -------------------------------------------------------------------------

    def _run_batch(self, pixels: np.ndarray, sizes: list) -> list[dict]:
        """One forward pass and the decision policy (on the model thread)."""
        results = self.predictor.predict_pixels(pixels, sizes)
        for r in results:
            DECISIONS.labels(self.name, r["decision"], r["refer_reason"] or "").inc()
        return results

    def _observe_batch(self, images: int, requests: int) -> None:
        BATCH_IMAGES.labels(self.name).observe(images)
        BATCH_REQUESTS.labels(self.name).observe(requests)

    # --- what the upload routes and the page use ------------------------------------------------

    def decode(self, data: bytes, size: int | None = None) -> np.ndarray:
        try:
            return decode_image(data, size or self.predictor.image_size, max_pixels=self.settings.max_pixels)
        except BadImage as err:
            raise InputError(str(err)) from err

    def _decode_files(self, files: list[bytes]) -> tuple[np.ndarray, list]:
        return np.stack([self.decode(f) for f in files]), [original_size(f) for f in files]

    async def _decode_and_predict(self, data: bytes) -> tuple[np.ndarray, dict]:
        """One uploaded file's pixels at model size and its prediction, batched with whatever
        else is waiting."""
        with self.batcher.incoming():
            pixels, sizes = await asyncio.get_running_loop().run_in_executor(None, self._decode_files, [data])
            answer = self.batcher.submit(pixels, sizes)  # queued here, inside the announcement
        return pixels[0], (await answer)[0]

    async def predict_upload(self, data: bytes) -> dict:
        """One uploaded file (/predict, the page)."""
        return (await self._decode_and_predict(data))[1]

    async def explain_png(self, data: bytes) -> tuple[bytes, dict, str]:
        """Grad-CAM over the image as the model sees it (square-resized): (PNG, the prediction, layer name).

        The prediction is the one /predict and V2 give for this image (p is the mean over the
        flipped views); the heatmap explains the unflipped view, the one a person looks at. An
        image the decision policy finds out of scope gets no heatmap (422): a map over a palace
        or a blank frame would look like an explanation of a lesion."""
        pixels, result = await self._decode_and_predict(data)
        if result["refer_reason"] == "out_of_scope":
            raise InputError(result["refer_text"], 422)
        # decoded off the model thread, like every image; the model-size pixels are the predicted ones
        display = await asyncio.get_running_loop().run_in_executor(None, self.decode, data, DISPLAY_SIZE)
        return await self.batcher.run_exclusive(self._heatmap_png, pixels, display, result)

    def _heatmap_png(self, pixels: np.ndarray, display: np.ndarray, result: dict) -> tuple[bytes, dict, str]:
        from components.core.inference import gradcam

        if self._gradcam is None:
            self._gradcam = gradcam.for_model(self.predictor.model)
        heat, _ = self._gradcam.heatmap(pixels)
        return gradcam.to_png(gradcam.overlay(display, heat)), result, self._gradcam.target.name

    def identity(self) -> dict:
        return {"model_name": self.name, "model_version": self.version}

    def require_version(self, version: str) -> None:
        """Raise KServe's 404 unless ``version`` is the one served (KServe itself answers 501 to
        any versioned path; this server serves exactly one version, so it can say which)."""
        if version != self.version:
            raise ModelNotFound(
                f"{self.name} version {version} (this server serves version {self.version or '(unversioned)'})"
            )

    def metadata_extras(self) -> dict:
        """What the REST model metadata adds to KServe's (name, platform, inputs, outputs): the
        version, what each tensor holds, and the stored decision settings. gRPC's
        ``TensorMetadata`` has no field for them."""
        return {
            "versions": [self.version] if self.version else [],
            "platform": "tensorflow_keras",
            "inputs": [
                {
                    **t,
                    "parameters": {
                        "content": "JPEG or PNG file; base64 in JSON, raw with binary data and gRPC"
                        if t["datatype"] == "BYTES"
                        else "RGB pixels, any height and width"
                    },
                }
                for t in self.get_input_types()
            ],
            "outputs": [{**t, "parameters": {"content": OUTPUT_TEXT[t["name"]]}} for t in self.get_output_types()],
            "parameters": {
                "threshold": self.predictor.threshold,
                "image_size": self.predictor.image_size,
                "classes": list(CLASSES),
                "decision_policy": self.predictor.policy.summary(),
            },
        }


def _tensor_values(tensor):
    """A parsed tensor's values: the JSON (or gRPC typed contents) list as sent, else the raw
    bytes as an array of the declared shape."""
    if isinstance(tensor.data, list) and tensor.data:
        return tensor.data
    try:
        return tensor.as_numpy()
    except (ValueError, TypeError, struct.error) as err:
        raise InputError(
            f"input {tensor.name!r}: shape {list(tensor.shape)} does not match the data sent ({err})"
        ) from None


def _number(value: float, grpc: bool):
    """A float answer parameter. KServe's V2 gRPC ``InferParameter`` holds bool, int64 or string
    only (``kserve/protocol/grpc/grpc_predict_v2.proto``), so gRPC answers carry it as the
    number's text; REST as a JSON number."""
    return repr(value) if grpc else value


def _bytes_array(values) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype=object)
