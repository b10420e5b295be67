"""The routes that are ours, on the same HTTP server as KServe's V2 endpoints: the clinician
page (``/``), ``/predict`` and ``/explain`` (multipart uploads, for people and scripts) and the
model card; the upload limits (:class:`~.limits.BodyLimit`) and the error answers for every route.

:func:`install_routes` adds them to a FastAPI app: :mod:`.server` to KServe's, the tests to a bare
one (no KServe import). Every error is ``{"error": "<what went wrong>"}`` with a 4xx for bad input,
so the server keeps serving. A client that hangs up mid-request is logged at INFO, not as a server
error.
"""

import html
import logging
import time
from importlib import resources
from string import Template

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import Histogram
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from components.core.serving.config import ServingSettings
from components.core.serving.inputs import InputError
from components.core.serving.limits import BodyLimit, check_upload_name, media_type

log = logging.getLogger(__name__)

# JSONResponse: KServe's app defaults to ORJSONResponse, which FastAPI now deprecates
uploads = APIRouter(default_response_class=JSONResponse)  # multipart uploads and the page

# KServe's histograms time its V2 endpoints; these time ours, by route and answer.
UPLOAD_SECONDS = Histogram(
    "skin_cancer_upload_request_seconds", "Latency of /predict and /explain requests", ["route", "status"]
)


def static_page(name: str = "index.html") -> str:
    return resources.files("components.core.serving").joinpath(f"static/{name}").read_text(encoding="utf-8")


def _served(request: Request):
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


ERROR_HANDLERS = {
    InputError: _input_error,
    HTTPException: _http_error,
    ClientDisconnect: _client_disconnect,
    RequestValidationError: _validation_error,
    Exception: _internal_error,
}


# --- uploads and the page -----------------------------------------------------------------------


async def _read_upload(request: Request) -> bytes:
    """The image in multipart form field ``file``."""
    media = media_type(request.headers.get("content-type"))
    if media != "multipart/form-data":
        raise InputError(
            f"expected multipart/form-data with the image in form field 'file', got content type {media or 'none'!r}",
            415,
        )
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


class _Timed:
    """Observes one upload request's latency in :data:`UPLOAD_SECONDS`, labelled by its answer."""

    def __init__(self, route: str):
        self.route = route

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, kind, err, tb):
        status = "200" if err is None else str(getattr(err, "status", getattr(err, "status_code", 500)))
        UPLOAD_SECONDS.labels(self.route, status).observe(time.perf_counter() - self.started)


@uploads.post("/predict")
async def predict(request: Request):
    model = _served(request)
    with _Timed("/predict"):
        data = await _read_upload(request)
        result = await model.predict_upload(data)
    return {**result, "threshold": model.predictor.threshold, **model.identity()}


@uploads.post("/explain")
async def explain(request: Request):
    model = _served(request)
    with _Timed("/explain"):
        data = await _read_upload(request)
        png, result, layer = await model.explain_png(data)
    return Response(
        png,
        media_type="image/png",
        headers={
            "X-P-Malignant": f"{result['p_malignant']:.6f}",
            "X-Decision": result["decision"],
            "X-Refer-Reason": result["refer_reason"] or "",
            "X-Grad-CAM-Layer": layer,
            "Cache-Control": "no-store",
        },
    )


@uploads.get("/", response_class=HTMLResponse)
async def index(request: Request):
    return HTMLResponse(request.app.state.page)


def _card(request: Request) -> str:
    card = request.app.state.model_card
    if card is None:
        model = _served(request)
        raise InputError(
            f"no model card for {model.name} version {model.version or '(unversioned)'}: a card is "
            "model_card.md beside model.keras in the model's folder, or in its MLflow run; the "
            "pipeline's selection step writes one for every version it registers",
            404,
        )
    return card


@uploads.get("/model-card", response_class=HTMLResponse)
async def model_card_page(request: Request):
    """The served model's card (what it is for, its data, metrics with intervals, limits)."""
    card = _card(request)
    model = _served(request)
    page = Template(static_page("model_card.html")).safe_substitute(
        name=html.escape(model.name), version=html.escape(model.version or "(unversioned)"), card=html.escape(card)
    )
    return HTMLResponse(page)


@uploads.get("/model-card.md")
async def model_card_markdown(request: Request):
    return Response(_card(request), media_type="text/markdown; charset=utf-8")


# --- the routes on an app ------------------------------------------------------------------------


def install_routes(app: FastAPI, model, settings: ServingSettings, model_card: str | None = None) -> FastAPI:
    """Add the page, the upload routes, the model card, the upload limits and the error answers to
    ``app`` for ``model`` (a :class:`~.model.ServedModel`; the tests pass a stand-in).
    ``model_card``: the card's Markdown (``GET /model-card``), None when it has none."""
    app.state.model = model
    app.state.page = static_page()
    app.state.model_card = model_card
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, timeout_s=settings.body_timeout_s)
    for exc_class, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    app.include_router(uploads)
    return app
