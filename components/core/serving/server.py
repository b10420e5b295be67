"""``skin-cancer serve``: KServe's ``ModelServer`` running :class:`~.model.ServedModel`, with our
routes (:mod:`.app`) on its HTTP app.

KServe answers V2 over REST and gRPC (health, metadata, inference), ``/metrics`` (Prometheus)
and its V1 routes. Three V2 routes are ours, registered ahead of KServe's on the same paths:

* ``POST /v2/models/{name}[/versions/{v}]/infer``: the body is parsed here and handed to KServe's
  own endpoint as an ``InferRequest``. JSON goes through KServe's ``InferenceRequest`` model;
  the binary tensor data extension is split here because kserve 0.21's
  ``InferRequest.from_bytes`` re-encodes every BYTES element as UTF-8 text
  (``set_data_from_numpy(..., binary_data=False)`` in ``kserve/protocol/infer_type.py``), which
  fails for every JPEG a Triton client sends (kserve/kserve#3731 is the same fault on gRPC's
  ``as_dataframe``);
* ``GET /v2/models/{name}[/versions/{v}]``: KServe's metadata plus the version, what each
  tensor holds and the decision settings (gRPC's ``TensorMetadata`` has no field for them);
* the versioned paths: KServe answers 501 to any version; this server serves exactly one, so
  it answers for that one and 404 for others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from kserve import ModelServer
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from pydantic import ValidationError

from components.core.serving.app import ERROR_HANDLERS, install_routes
from components.core.serving.config import ServingSettings
from components.core.serving.inputs import InputError, split_binary_body
from components.core.serving.limits import media_type
from components.core.serving.model import ServedInputError, ServedModel

log = logging.getLogger(__name__)

DEFAULT_GRPC_PORT = 8081  # KServe's


def infer_request_from_body(body: bytes, header_length: str | None, model_name: str) -> InferRequest:
    """A V2 REST infer body as KServe's ``InferRequest``: JSON through KServe's data model; with
    ``Inference-Header-Content-Length``, the JSON header and each input's raw bytes, kept as
    bytes (see the module's note)."""
    if header_length is None:
        try:
            return InferRequest.from_inference_request(InferenceRequest.model_validate_json(body), model_name)
        except ValidationError as err:
            raise InputError(_validation_message(err)) from None
    header, raws = split_binary_body(body, header_length)
    inputs = []
    for tensor, raw in zip(header["inputs"], raws):
        inp = InferInput(
            tensor["name"], tensor.get("shape"), tensor.get("datatype"), parameters=tensor.get("parameters") or {}
        )
        if raw is None:
            inp.data = tensor["data"]
        inputs.append(inp)
    outputs = header.get("outputs")
    requested = (
        [
            RequestedOutput(o["name"], o.get("parameters"))
            for o in outputs
            if isinstance(o, dict) and isinstance(o.get("name"), str)
        ]
        if isinstance(outputs, list)
        else None
    )
    return InferRequest(
        model_name,
        inputs,
        request_id=header.get("id"),
        raw_inputs=raws,
        parameters=header.get("parameters"),
        request_outputs=requested or None,
    )


def _validation_message(err: ValidationError) -> str:
    first = err.errors()[0]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {first.get('msg')}"
    if first.get("type") == "model_type":
        return "the request body must be a JSON object with an 'inputs' list"
    return "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in err.errors()[:5])


def install_v2_routes(app: FastAPI, model: ServedModel, server: ModelServer) -> None:
    """Our V2 routes (see the module's note), ahead of KServe's on the same paths."""
    endpoints = V2Endpoints(server.dataplane, server.model_repository_extension)
    router = APIRouter(prefix="/v2/models/{model_name}", tags=["V2"], default_response_class=JSONResponse)

    async def infer(model_name: str, raw_request: Request, raw_response: Response, model_version: str | None = None):
        if model_version is not None:
            model.require_version(model_version)
        media = media_type(raw_request.headers.get("content-type"))
        header_length = raw_request.headers.get("inference-header-content-length")
        allowed = {"", "application/json"} | ({"application/octet-stream"} if header_length is not None else set())
        if media not in allowed:
            raise InputError(
                f"V2 infer expects application/json (or application/octet-stream with "
                f"Inference-Header-Content-Length), got {media!r}",
                415,
            )
        request = infer_request_from_body(await raw_request.body(), header_length, model_name)
        return await endpoints.infer(raw_request, raw_response, model_name, request)

    async def metadata(model_name: str, model_version: str | None = None):
        if model_version is not None:
            model.require_version(model_version)
        return {**await server.dataplane.model_metadata(model_name), **model.metadata_extras()}

    async def ready(model_name: str, model_version: str):
        model.require_version(model_version)
        return await endpoints.model_ready(model_name)

    router.add_api_route("/infer", infer, methods=["POST"])
    router.add_api_route("/versions/{model_version}/infer", infer, methods=["POST"])
    router.add_api_route("", metadata, methods=["GET"])
    router.add_api_route("/versions/{model_version}", metadata, methods=["GET"])
    router.add_api_route("/versions/{model_version}/ready", ready, methods=["GET"])
    app.include_router(router)


class _ModelServer(ModelServer):
    """KServe's server, with the HTTP address this command was given (KServe listens on 0.0.0.0;
    a laptop running the page should not show patients' images to its whole network) and its
    decode threads on the loop that runs."""

    def __init__(self, host: str, **kwargs):
        super().__init__(**kwargs)
        self.host = host

    async def _serve(self):
        # ModelServer.start sets its executor (--max_asyncio_workers: the threads that decode
        # images) on asyncio.get_event_loop(), then asyncio.run()s a new loop: give it to this one.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=self.max_asyncio_workers))
        self._rest_server.config.host = self.host
        await super()._serve()


def serve(
    model_uri: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    grpc_port: int = DEFAULT_GRPC_PORT,
    settings: ServingSettings | None = None,
    **kserve_options,
) -> None:
    """Load the model once, then serve V2 (REST on ``port``, gRPC on ``grpc_port``, 0 for none),
    the page and the upload routes until stopped. ``kserve_options``: ``kserve.ModelServer``'s
    own (``max_threads``, ``max_asyncio_workers``, ``enable_latency_logging``, ``access_log_format``)."""
    from components.core.inference.runtime import SERVING_INTER_OP_THREADS, bound_model_memory

    # before TensorFlow's first op: within the pod's memory limit (issue 32)
    bound_model_memory(SERVING_INTER_OP_THREADS)

    import kserve.model_server

    from components.core.inference.predictor import Predictor
    from components.core.reporting.model_card import find as find_model_card

    settings = settings or ServingSettings.from_env()
    started = time.perf_counter()
    try:
        predictor = Predictor.load(model_uri)
    except (OSError, ValueError):
        raise
    except Exception as err:  # MLflow: no such model, alias or server; say which URI
        raise ValueError(f"cannot load model {model_uri!r}: {type(err).__name__}: {err}") from err
    card = find_model_card(model_uri, predictor.model_name, predictor.model_version)
    model = ServedModel(predictor, settings)
    model.load()
    server = _ModelServer(
        host, http_port=port, grpc_port=grpc_port or DEFAULT_GRPC_PORT, enable_grpc=bool(grpc_port), **kserve_options
    )
    app = kserve.model_server.app  # the app KServe's REST server runs (FASTAPI_APP_IMPORT_STRING)
    app.title, app.description = "skin-cancer classifier", "Decision support only: not a diagnosis."
    install_v2_routes(app, model, server)
    install_routes(app, model, settings, model_card=card)
    # the same answer as an InputError's: {"error"} with its status (KServe's own handler says 400)
    app.add_exception_handler(ServedInputError, ERROR_HANDLERS[InputError])
    log.warning(
        "loaded %s version %s from %s in %.1f s (threshold %.3f; %s); serving on http://%s:%d%s",
        model.name,
        model.version or "?",
        model_uri,
        time.perf_counter() - started,
        predictor.threshold,
        "with its model card" if card else "no model card",
        host,
        port,
        f" and gRPC on port {grpc_port}" if grpc_port else "",
    )
    asyncio.set_event_loop(asyncio.new_event_loop())  # ModelServer.start asks for the current loop
    server.start([model])
