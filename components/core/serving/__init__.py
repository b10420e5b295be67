"""The inference server: KServe's Python model server (``kserve.ModelServer``) running one loaded
:class:`~components.core.inference.predictor.Predictor`, with the clinician page and upload routes on the
same HTTP app.

Modules (the protocol is KServe's; what is here is ours):

* :mod:`.config`: :class:`ServingSettings`, the limits, batching and identity the server uses;
* :mod:`.inputs`: what this model accepts as a V2 input tensor, as plain functions
  (:func:`~.inputs.check_tensor`, :class:`~.inputs.InputError`), no HTTP and no KServe;
* :mod:`.batching`: :class:`~.batching.AdaptiveBatcher`, requests that arrive together share one
  forward pass, on one model thread;
* :mod:`.limits`: what is refused before any model work (:class:`~.limits.BodyLimit`, the upload check);
* :mod:`.app`: the page, ``/predict``, ``/explain``, the model card and the error answers
  (:func:`~.app.install_routes`, on any FastAPI app);
* :mod:`.model`: :class:`~.model.ServedModel`, the ``kserve.Model`` (imports KServe);
* :mod:`.server`: :func:`~.server.serve`, KServe's ``ModelServer`` with our routes (imports KServe).

Endpoints (every error is ``{"error": "<what went wrong>"}`` with a 4xx for bad input, so the
server keeps serving):

* V2 over REST (``--port``, default 8080) and gRPC (``--grpc-port``, default 8081), by KServe:
  ``/v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models``, model metadata and
  readiness, ``POST /v2/models/{name}[/versions/{v}]/infer``. Inputs: a ``BYTES`` tensor of
  JPEG/PNG files (shape ``[n]``; each element base64 in JSON, raw with the binary tensor data
  extension and in gRPC), or a ``UINT8`` tensor of RGB pixels, shape ``[n, h, w, 3]``. Outputs:
  ``p_malignant`` (FP32), ``label``, ``decision`` and ``refer_reason`` (BYTES), one per image.
* ``GET /metrics``: Prometheus text (KServe's request latency histograms, and ours: decisions,
  batch sizes, upload request latencies).
* ``POST /predict``: multipart form field ``file`` (JPEG or PNG, any case of extension) ->
  ``{"label", "p_malignant", "decision", "refer_reason", ..., "threshold", "model_name", "model_version"}``.
* ``POST /explain``: same upload -> PNG of the Grad-CAM heatmap over the image as the model saw it.
* ``GET /``: the clinician page; ``GET /model-card``: the served model's card.

The package imports nothing heavy: ``from components.core.serving.server import serve`` loads KServe.
"""

from components.core.serving.config import DEFAULT_MAX_BATCH, ServingSettings

__all__ = ["DEFAULT_MAX_BATCH", "ServingSettings"]
