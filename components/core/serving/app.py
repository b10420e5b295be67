"""The HTTP server: the FastAPI app around one :class:`ServedModel` and its routes, and
:func:`serve` (``skin-cancer serve``). What the routes speak is in :mod:`.protocol`, what they
refuse early in :mod:`.limits`, the model in :mod:`.model`.

Every error is ``{"error": "<what went wrong>"}`` with a 4xx for bad input, so the server keeps
serving. A client that hangs up mid-request is logged at INFO, not as a server error.
"""

import html
import logging
import time
from importlib import resources
from string import Template

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from components.core import settings as project_settings
from components.core.model_card import find as find_model_card
from components.core.serving.config import ServingSettings
from components.core.serving.limits import BodyLimit, check_upload_name, media_type
from components.core.serving.model import ServedModel
from components.core.serving.protocol import InputError, infer_response, parse_infer_request

log = logging.getLogger(__name__)

v2 = APIRouter()  # KServe's Open Inference Protocol (V2)
uploads = APIRouter()  # multipart uploads and the page, for people and scripts


def static_page(name: str = "index.html") -> str:
    return resources.files("components.core").joinpath(f"static/{name}").read_text(encoding="utf-8")


def _served(request: Request) -> ServedModel:
    return request.app.state.model


# --- errors: every one is {"error": ...} ---------------------------------------------------------


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _input_error(request: Request, exc: InputError):
    return _error(exc.status, str(exc))


async def _http_error(request: Request, exc: HTTPException):
    return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _client_disconnect(request: Request, exc: ClientDisconnect):
    # The client hung up in the middle of its request: nobody is left to answer, and it is
    # not a server error (left to the handler below it would be logged with a traceback).
    log.info("client disconnected before sending the whole request: %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def _validation_error(request: Request, exc: RequestValidationError):
    return _error(422, "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()))


async def _internal_error(request: Request, exc: Exception):
    log.exception("internal error on %s %s", request.method, request.url.path)
    return _error(500, f"internal error ({type(exc).__name__}); the server logged the details")


ERROR_HANDLERS = {InputError: _input_error, HTTPException: _http_error, ClientDisconnect: _client_disconnect,
                  RequestValidationError: _validation_error, Exception: _internal_error}


# --- V2 health, metadata and inference ----------------------------------------------------------


@v2.get("/v2/health/live")
async def live():
    return {"live": True}


@v2.get("/v2/health/ready")
async def ready():
    return {"ready": True}


@v2.get("/v2")
async def server_metadata(request: Request):
    model = _served(request)
    return {"name": "skin-cancer-server", "version": project_settings.version(), "extensions": ["binary_tensor_data"],
            "model": model.name, "model_version": model.version,
            "uptime_seconds": time.time() - request.app.state.started}


@v2.get("/v2/models/{name}")
@v2.get("/v2/models/{name}/versions/{version}")
async def model_metadata(name: str, request: Request, version: str | None = None):
    model = _served(request)
    model.require(name, version)
    return model.metadata()


@v2.get("/v2/models/{name}/ready")
@v2.get("/v2/models/{name}/versions/{version}/ready")
async def model_ready(name: str, request: Request, version: str | None = None):
    model = _served(request)
    model.require(name, version)
    return {"name": model.name, "ready": True}


@v2.post("/v2/models/{name}/infer")
@v2.post("/v2/models/{name}/versions/{version}/infer")
async def infer(name: str, request: Request, version: str | None = None):
    model = _served(request)
    model.require(name, version)
    media = media_type(request.headers.get("content-type"))
    header_length = request.headers.get("inference-header-content-length")
    allowed = {"", "application/json"} | ({"application/octet-stream"} if header_length is not None else set())
    if media not in allowed:
        raise InputError(f"V2 infer expects application/json (or application/octet-stream with "
                         f"Inference-Header-Content-Length), got {media!r}", 415)
    parsed_request, inputs = parse_infer_request(await request.body(), header_length, model.settings)
    results = await run_in_threadpool(model.predict_input, inputs[0].datatype, inputs[0].values)
    return infer_response(parsed_request, results, model.identity(), model.predictor.threshold)


# --- uploads and the page -----------------------------------------------------------------------


async def _read_upload(request: Request) -> bytes:
    """The image in multipart form field ``file``."""
    media = media_type(request.headers.get("content-type"))
    if media != "multipart/form-data":
        raise InputError(f"expected multipart/form-data with the image in form field 'file', "
                         f"got content type {media or 'none'!r}", 415)
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("file")
    if upload is None:
        raise InputError("form field 'file' is missing: send the image as multipart field 'file'")
    if not isinstance(upload, UploadFile):
        raise InputError("form field 'file' must be a file upload, not a text value")
    check_upload_name(upload.filename, upload.content_type)
    data = await upload.read()
    await form.close()
    return data


@uploads.post("/predict")
async def predict(request: Request):
    model = _served(request)
    data = await _read_upload(request)
    result = await run_in_threadpool(model.predict_upload, data)
    return {**result, "threshold": model.predictor.threshold, **model.identity()}


@uploads.post("/explain")
async def explain(request: Request):
    model = _served(request)
    data = await _read_upload(request)
    png, result, layer = await run_in_threadpool(model.explain_png, data)
    return Response(png, media_type="image/png",
                    headers={"X-P-Malignant": f"{result['p_malignant']:.6f}", "X-Decision": result["decision"],
                             "X-Refer-Reason": result["refer_reason"] or "", "X-Grad-CAM-Layer": layer,
                             "Cache-Control": "no-store"})


@uploads.get("/", response_class=HTMLResponse)
async def index(request: Request):
    return HTMLResponse(request.app.state.page)


def _card(request: Request) -> str:
    card = request.app.state.model_card
    if card is None:
        model = _served(request)
        raise InputError(f"no model card for {model.name} version {model.version or '(unversioned)'}: a card is "
                         "model_card.md beside model.keras in the model's folder, or in its MLflow run; the "
                         "pipeline's selection step writes one for every version it registers", 404)
    return card


@uploads.get("/model-card", response_class=HTMLResponse)
async def model_card_page(request: Request):
    """The served model's card (what it is for, its data, metrics with intervals, limits)."""
    card = _card(request)
    model = _served(request)
    page = Template(static_page("model_card.html")).safe_substitute(
        name=html.escape(model.name), version=html.escape(model.version or "(unversioned)"), card=html.escape(card))
    return HTMLResponse(page)


@uploads.get("/model-card.md")
async def model_card_markdown(request: Request):
    return Response(_card(request), media_type="text/markdown; charset=utf-8")


# --- the app and the server ---------------------------------------------------------------------


def create_app(predictor, settings: ServingSettings | None = None, warm_up: bool = True,
               model_card: str | None = None) -> FastAPI:
    """The FastAPI app around one loaded ``predictor`` (tests build it with a tiny model);
    ``model_card``: its card's Markdown (``GET /model-card``), None when it has none."""
    settings = settings or ServingSettings.from_env()
    model = ServedModel(predictor, settings)
    if warm_up:  # the first call traces the graph: pay for it before the first request
        model.warm_up()
    app = FastAPI(title="skin-cancer classifier", version=model.version or "0",
                  description="Decision support only: not a diagnosis.", docs_url="/docs", redoc_url=None)
    app.state.model = model
    app.state.page = static_page()
    app.state.model_card = model_card
    app.state.started = time.time()
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, timeout_s=settings.body_timeout_s)
    for exc_class, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    app.include_router(v2)
    app.include_router(uploads)
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
    card = find_model_card(model_uri, predictor.model_name, predictor.model_version)
    app = create_app(predictor, settings, model_card=card)
    model = app.state.model
    log.warning("loaded %s version %s from %s in %.1f s (threshold %.3f; %s); serving on http://%s:%d",
                model.name, model.version or "?", model_uri, time.perf_counter() - started,
                predictor.threshold, "with its model card" if card else "no model card", host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
