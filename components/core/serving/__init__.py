"""The inference server: one loaded :class:`~components.core.predictor.Predictor`, KServe's Open
Inference Protocol (V2), a multipart ``/predict`` for people and scripts, Grad-CAM, and the
clinician page at ``/``.

Modules, after KServe's Python server (``kserve/protocol/`` apart from the model and the wiring):

* :mod:`.config`: :class:`ServingSettings`, the limits and the identity the server reports;
* :mod:`.protocol`: the V2 protocol as plain functions (:func:`parse_infer_request`,
  :func:`infer_response`, :class:`InputError`), no HTTP and no model;
* :mod:`.limits`: what is refused before any model work (:class:`BodyLimit`, the upload check);
* :mod:`.model`: :class:`ServedModel`, the Predictor with a lock, a traced forward pass, V2
  metadata and Grad-CAM;
* :mod:`.app`: the FastAPI app and its routes (:func:`create_app`), and :func:`serve`.

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

A request body that stops arriving for ``SKIN_CANCER_BODY_TIMEOUT_S`` (30 s) gets 408 and its
connection is closed.
"""

from components.core.serving.app import create_app, serve, static_page
from components.core.serving.config import DEFAULT_MAX_BATCH, ServingSettings
from components.core.serving.limits import BodyLimit
from components.core.serving.model import ServedModel, compiled_forward
from components.core.serving.protocol import InferInput, InputError, infer_response, parse_infer_request

__all__ = [
    "DEFAULT_MAX_BATCH", "BodyLimit", "InferInput", "InputError", "ServedModel", "ServingSettings",
    "compiled_forward", "create_app", "infer_response", "parse_infer_request", "serve", "static_page",
]
