"""The inference server: one loaded :class:`Predictor`, KServe's Open Inference Protocol (V2),
a multipart ``/predict`` for people and scripts, Grad-CAM, and the clinician page at ``/``.

Endpoints (all answers are JSON; every error is ``{"error": "<what went wrong>"}`` with a 4xx
for bad input, so the server keeps serving):

* ``GET  /v2/health/live``, ``GET /v2/health/ready``: liveness and readiness (V2).
* ``GET  /v2``: server metadata; ``GET /v2/models/{name}[/versions/{v}]``: model metadata;
  ``GET /v2/models/{name}[/versions/{v}]/ready``.
* ``POST /v2/models/{name}[/versions/{v}]/infer``: V2 inference. Inputs: a ``BYTES`` tensor of
  JPEG/PNG files (shape ``[n]``; each element base64 in JSON, or raw with the binary tensor
  data extension), or a ``UINT8`` tensor of RGB pixels, shape ``[n, h, w, 3]``. Outputs:
  ``p_malignant`` (FP32, ``[n]``) and ``label`` (BYTES, ``[n]``), at the model's stored threshold.
* ``POST /predict``: multipart form field ``file`` (JPEG or PNG, any case of extension) ->
  ``{"label", "p_malignant", "threshold", "model_name", "model_version"}``.
* ``POST /explain``: same upload -> PNG of the Grad-CAM heatmap over the image as the model saw it.
* ``GET  /``: the clinician page.

The app factory takes a loaded Predictor (the model is loaded once, before the server listens),
so tests build it with a tiny model. Model calls are serialised by a lock: Keras models are not
documented as thread-safe, and TensorFlow already uses every core inside one call. The model
runs as one traced graph (:func:`compiled_forward`), not op by op from Python. A request body
that stops arriving for ``SKIN_CANCER_BODY_TIMEOUT_S`` (30 s) gets 408 and its connection is
closed; a client that hangs up mid-request is logged at INFO, not as a server error.
"""

import asyncio
import base64
import binascii
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

import numpy as np

from components.core.dataset import CLASSES
from components.core.images import IMAGE_EXTENSIONS, MAX_PIXELS, BadImage, decode_image

log = logging.getLogger(__name__)

MAX_UPLOAD_ENV = "SKIN_CANCER_MAX_UPLOAD_MB"
MAX_PIXELS_ENV = "SKIN_CANCER_MAX_PIXELS"
BODY_TIMEOUT_ENV = "SKIN_CANCER_BODY_TIMEOUT_S"
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_BATCH = 32
DEFAULT_BODY_TIMEOUT_S = 30.0  # longest wait for the next piece of a request body
IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "application/octet-stream"})
DISPLAY_SIZE = 320  # side of the Grad-CAM picture


@dataclass
class ServingSettings:
    """Limits and the identity the server reports. ``None`` names keep the Predictor's own."""

    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    max_pixels: int = MAX_PIXELS
    max_batch: int = DEFAULT_MAX_BATCH
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    model_name: str | None = None
    model_version: str | None = None

    @classmethod
    def from_env(cls, **overrides) -> "ServingSettings":
        """Defaults, then ``SKIN_CANCER_MAX_UPLOAD_MB``/``SKIN_CANCER_MAX_PIXELS``/
        ``SKIN_CANCER_BODY_TIMEOUT_S``, then ``overrides``
        (values of ``None`` are ignored, so command-line flags left unset fall through)."""
        s = cls()
        if os.environ.get(MAX_UPLOAD_ENV):
            s.max_upload_bytes = int(float(os.environ[MAX_UPLOAD_ENV]) * 1024 * 1024)
        if os.environ.get(MAX_PIXELS_ENV):
            s.max_pixels = int(os.environ[MAX_PIXELS_ENV])
        if os.environ.get(BODY_TIMEOUT_ENV):
            s.body_timeout_s = float(os.environ[BODY_TIMEOUT_ENV])
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        if s.max_upload_bytes <= 0 or s.max_pixels <= 0 or s.max_batch <= 0 or not s.body_timeout_s > 0:
            raise ValueError("upload limit, pixel limit, batch limit and body timeout must be positive")
        return s


class InputError(ValueError):
    """The request is malformed; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def compiled_forward(model):
    """The model's forward pass as one traced TensorFlow graph, for any batch and image size.

    Calling a Keras model eagerly dispatches every op from Python: ~45 ms a call for the small
    test model, against ~1.5 ms for the same graph traced once (same probabilities). Under load
    the model lock makes that per-call cost the server's throughput limit."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.uint8)
    return tf.function(lambda images: model(images, training=False), input_signature=[spec], autograph=False)


class Model:
    """The Predictor plus what serving adds: a lock, batching, V2 metadata and Grad-CAM."""

    def __init__(self, predictor, settings: ServingSettings):
        self.predictor = predictor
        self.settings = settings
        self.name = settings.model_name or predictor.model_name
        self.version = str(settings.model_version or predictor.model_version or "")
        self._lock = threading.Lock()
        self._gradcam = None
        self._forward = None

    def decode(self, data: bytes, size: int | None = None) -> np.ndarray:
        try:
            return decode_image(data, size or self.predictor.image_size, max_pixels=self.settings.max_pixels)
        except BadImage as err:
            raise InputError(str(err)) from err

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

    def identity(self) -> dict:
        return {"model_name": self.name, "model_version": self.version}

    def explain_png(self, data: bytes) -> tuple[bytes, float, str]:
        """Grad-CAM over the image as the model sees it (square-resized): (PNG, p, layer name)."""
        from components.core import gradcam

        pixels = self.decode(data)
        display = self.decode(data, DISPLAY_SIZE)
        with self._lock:
            if self._gradcam is None:
                self._gradcam = gradcam.GradCam(self.predictor.model)
            heat, p = self._gradcam.heatmap(pixels)
        return gradcam.to_png(gradcam.overlay(display, heat)), p, self._gradcam.target.name

    def metadata(self) -> dict:
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


# ---------------------------------------------------------------------------------------------
# V2 request parsing (plain functions: testable without HTTP)


def _shape(tensor: dict, where: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise InputError(f"{where}: 'shape' must be a list of non-negative integers")
    return shape


def _flatten(data) -> list:
    if not isinstance(data, list):
        return [data]
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _split_binary_bytes(raw: bytes, where: str) -> list[bytes]:
    """BYTES in the binary data extension: each element is a 4-byte little-endian length, then the bytes."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InputError(f"{where}: binary BYTES data ends inside a length prefix")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise InputError(f"{where}: binary BYTES element is longer than the data sent")
        items.append(raw[pos : pos + n])
        pos += n
    return items


def parse_infer_request(body: bytes, header_length: str | None, settings: ServingSettings) -> tuple[dict, list]:
    """The JSON object and its inputs as ``[(name, datatype, shape, values)]``, where values is a
    list of image bytes (BYTES) or a uint8 array (UINT8). Raises :class:`InputError`."""
    binary = b""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InputError("Inference-Header-Content-Length must be an integer") from None
        if not 0 <= n <= len(body):
            raise InputError(f"Inference-Header-Content-Length {n} is outside the body ({len(body)} bytes)")
        body, binary = body[:n], body[n:]
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"request body is not valid JSON: {err}") from None
    if not isinstance(request, dict):
        raise InputError("request body must be a JSON object with an 'inputs' list")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("request must have a non-empty 'inputs' list")
    if len(inputs) != 1:
        raise InputError(f"send exactly one input tensor ('image' BYTES or 'pixels' UINT8), got {len(inputs)}")
    parsed, offset = [], 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InputError(f"inputs[{i}] must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"inputs[{i}]: 'name' must be a non-empty string")
        where = f"input {name!r}"
        datatype = tensor.get("datatype")
        shape = _shape(tensor, where)
        params = tensor.get("parameters") or {}
        if not isinstance(params, dict):
            raise InputError(f"{where}: 'parameters' must be an object")
        raw = None
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InputError(f"{where}: binary_data_size does not match the binary data sent")
            raw, offset = binary[offset : offset + size], offset + size
        elif "data" not in tensor:
            raise InputError(f"{where}: 'data' is missing")
        count = int(np.prod(shape)) if shape else 1
        if datatype == "BYTES":
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise InputError(f"{where}: a BYTES image tensor has shape [n] or [n, 1], got {shape}")
            items = _split_binary_bytes(raw, where) if raw is not None else _decode_b64_items(tensor["data"], where)
            values = items
        elif datatype == "UINT8":
            if len(shape) != 4 or shape[3] != 3:
                raise InputError(f"{where}: a UINT8 pixel tensor has shape [n, height, width, 3], got {shape}")
            if shape[1] * shape[2] > settings.max_pixels:
                raise InputError(f"{where}: {shape[1]}x{shape[2]} pixels is over the {settings.max_pixels:,} limit")
            if raw is not None:
                arr = np.frombuffer(raw, dtype=np.uint8)
            else:
                flat = _flatten(tensor["data"])
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
                    raise InputError(f"{where}: UINT8 data must be integers 0-255")
                arr = np.asarray(flat, dtype=np.int64)
                if arr.size and (arr.min() < 0 or arr.max() > 255):
                    raise InputError(f"{where}: UINT8 values must be in 0-255")
                arr = arr.astype(np.uint8)
            if arr.size != count:
                raise InputError(f"{where}: shape {shape} needs {count} values, got {arr.size}")
            values = arr.reshape(shape)
        else:
            raise InputError(f"{where}: datatype {datatype!r} is not supported; use BYTES (image files) "
                             "or UINT8 (pixels)")
        n = shape[0]
        if len(values) != n or (datatype == "BYTES" and len(values) != count):
            raise InputError(f"{where}: shape {shape} does not match the {len(values)} element(s) sent")
        if n == 0:
            raise InputError(f"{where}: no images in the tensor")
        if n > settings.max_batch:
            raise InputError(f"{where}: {n} images is over the batch limit of {settings.max_batch}", 413)
        parsed.append((name, datatype, shape, values))
    return request, parsed


def _decode_b64_items(data, where: str) -> list[bytes]:
    items = []
    for j, item in enumerate(_flatten(data)):
        if isinstance(item, dict) and isinstance(item.get("b64"), str):
            item = item["b64"]
        if not isinstance(item, str):
            raise InputError(f"{where}: element {j} must be a base64 string (JSON cannot carry raw bytes)")
        try:
            items.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InputError(f"{where}: element {j} is not valid base64") from None
    return items


def infer_response(model: Model, request: dict, results: list[dict]) -> dict:
    outputs = {
        "p_malignant": {"name": "p_malignant", "datatype": "FP32", "shape": [len(results)],
                        "data": [r["p_malignant"] for r in results]},
        "label": {"name": "label", "datatype": "BYTES", "shape": [len(results)],
                  "data": [r["label"] for r in results]},
    }
    wanted = request.get("outputs")
    names = list(outputs)
    if wanted is not None:
        if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in wanted):
            raise InputError("'outputs' must be a list of objects with a 'name'")
        names = [o["name"] for o in wanted]
        unknown = sorted(set(names) - set(outputs))
        if unknown:
            raise InputError(f"unknown output(s) {unknown}; this model has {sorted(outputs)}")
    answer = {**model.identity(), "outputs": [outputs[n] for n in names],
              "parameters": {"threshold": model.predictor.threshold}}
    if isinstance(request.get("id"), str):
        answer["id"] = request["id"]
    return answer


# ---------------------------------------------------------------------------------------------
# HTTP


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, before they are read,
    and bodies that stop arriving for ``timeout_s`` with 408 (then close the connection).

    A declared Content-Length over the limit is answered at once; a chunked body is counted as
    it arrives and stopped at the limit. The timeout is per piece of body, not for the whole
    upload, so a slow but steady client is never cut off; a client that sends half a body and
    stalls does not hold its handler and connection open for ever."""

    def __init__(self, app, max_bytes: int, timeout_s: float = DEFAULT_BODY_TIMEOUT_S):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _message(self) -> str:
        return (f"request body is over the {self.max_bytes / 1024 / 1024:.1f} MiB upload limit "
                f"(set with --max-upload-mb or {MAX_UPLOAD_ENV})")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            body = json.dumps({"error": self._message()}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        seen, complete = 0, False

        async def limited():
            from starlette.exceptions import HTTPException

            nonlocal seen, complete
            if complete:  # after the body only a disconnect can come: no timeout on waiting for it
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise HTTPException(408, f"the request body stopped arriving (nothing for {self.timeout_s:g} s, "
                                         f"{seen} bytes received); send it again", {"Connection": "close"}) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise HTTPException(413, self._message())
            else:
                complete = True
            return message

        return await self.app(scope, limited, send)


def _check_upload_name(filename: str | None, content_type: str | None) -> None:
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix and suffix not in IMAGE_EXTENSIONS:
        raise InputError(f"{filename!r}: unsupported file type {suffix!r}; upload a JPEG or PNG "
                         f"({', '.join(sorted(IMAGE_EXTENSIONS))}, any case)", 415)
    media = (content_type or "").split(";")[0].strip().lower()
    if media and media not in IMAGE_CONTENT_TYPES:
        raise InputError(f"{filename!r}: content type {media!r} is not an image; upload a JPEG or PNG", 415)


def static_page() -> str:
    return resources.files("components.core").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(predictor, settings: ServingSettings | None = None, warm_up: bool = True):
    """The FastAPI app around one loaded ``predictor``."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    settings = settings or ServingSettings.from_env()
    model = Model(predictor, settings)
    if warm_up:  # the first call traces the graph: pay for it before the first request
        model.predict_pixels(np.zeros((1, predictor.image_size, predictor.image_size, 3), np.uint8))
    page = static_page()
    started = time.time()

    app = FastAPI(title="skin-cancer classifier", version=model.version or "0",
                  description="Decision support only: not a diagnosis.", docs_url="/docs", redoc_url=None)
    app.state.model = model
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, timeout_s=settings.body_timeout_s)

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(InputError)
    async def _input_error(request, exc: InputError):
        return error(exc.status, str(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _client_disconnect(request, exc: ClientDisconnect):
        # The client hung up in the middle of its request: nobody is left to answer, and it is
        # not a server error (left to the handler below it would be logged with a traceback).
        log.info("client disconnected before sending the whole request: %s %s", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        return error(422, "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()))

    @app.exception_handler(Exception)
    async def _internal_error(request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server logged the details")

    def check_model(name: str, version: str | None = None) -> None:
        if name != model.name:
            raise InputError(f"model {name!r} is not served here; this server serves {model.name!r}", 404)
        if version is not None and version != model.version:
            raise InputError(f"model {name!r} version {version!r} is not served here; "
                             f"this server serves version {model.version!r}", 404)

    async def read_upload(request: Request) -> bytes:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "multipart/form-data":
            raise InputError(f"expected multipart/form-data with the image in form field 'file', "
                             f"got content type {media or 'none'!r}", 415)
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None:
            raise InputError("form field 'file' is missing: send the image as multipart field 'file'")
        if not isinstance(upload, UploadFile):
            raise InputError("form field 'file' must be a file upload, not a text value")
        _check_upload_name(upload.filename, upload.content_type)
        data = await upload.read()
        await form.close()
        return data

    # --- V2 health and metadata ----------------------------------------------------------------
    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return {"name": "skin-cancer-server", "version": "0.1.0", "extensions": ["binary_tensor_data"],
                "model": model.name, "model_version": model.version, "uptime_seconds": time.time() - started}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None):
        check_model(name, version)
        return model.metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None):
        check_model(name, version)
        return {"name": model.name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None):
        check_model(name, version)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        header_length = request.headers.get("inference-header-content-length")
        allowed = {"", "application/json"} | ({"application/octet-stream"} if header_length is not None else set())
        if media not in allowed:
            raise InputError(f"V2 infer expects application/json (or application/octet-stream with "
                             f"Inference-Header-Content-Length), got {media!r}", 415)
        body = await request.body()
        parsed_request, inputs = parse_infer_request(body, header_length, settings)
        _, datatype, _, values = inputs[0]

        def run():
            batch = values if datatype == "UINT8" else np.stack([model.decode(v) for v in values])
            return model.predict_pixels(batch)

        results = await run_in_threadpool(run)
        return infer_response(model, parsed_request, results)

    # --- people and scripts --------------------------------------------------------------------
    @app.post("/predict")
    async def predict(request: Request):
        data = await read_upload(request)
        result = (await run_in_threadpool(lambda: model.predict_pixels(model.decode(data)[None])))[0]
        return {**result, "threshold": predictor.threshold, **model.identity()}

    @app.post("/explain")
    async def explain(request: Request):
        data = await read_upload(request)
        png, p, layer = await run_in_threadpool(model.explain_png, data)
        return Response(png, media_type="image/png",
                        headers={"X-P-Malignant": f"{p:.6f}", "X-Grad-CAM-Layer": layer,
                                 "Cache-Control": "no-store"})

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page)

    return app


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 8080, settings: ServingSettings | None = None,
          log_level: str = "info") -> None:
    """Load the model once, then serve until stopped (``skin-cancer serve``)."""
    import uvicorn

    from components.core.predictor import Predictor

    settings = settings or ServingSettings.from_env()
    started = time.perf_counter()
    try:
        predictor = Predictor.load(model_uri)
    except (OSError, ValueError):
        raise
    except Exception as err:  # MLflow: no such model, alias or server; say which URI
        raise ValueError(f"cannot load model {model_uri!r}: {type(err).__name__}: {err}") from err
    app = create_app(predictor, settings)
    model = app.state.model
    log.warning("loaded %s version %s from %s in %.1f s (threshold %.3f); serving on http://%s:%d",
                model.name, model.version or "?", model_uri, time.perf_counter() - started,
                predictor.threshold, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
