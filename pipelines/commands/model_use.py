"""``skin-cancer predict | serve``: use a trained model."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from components.core.settings import REGISTERED_MODEL_NAME
from pipelines.commands.local_jobs import DEFAULT_WORKDIR


def _use_local_registry(args: argparse.Namespace) -> None:
    """Without MLFLOW_TRACKING_URI, a registry URI means the store `skin-cancer run` left in --workdir."""
    from components.core import settings
    from components.core.registry import tracking

    if args.model_uri.startswith(("models:/", "runs:/")) and not settings.tracking_uri():
        # The registry `skin-cancer run` wrote, so `run` then `serve` needs no setup.
        if not Path(args.workdir, "mlflow.db").is_file():
            raise ValueError(
                f"no MLflow registry to load {args.model_uri} from: set MLFLOW_TRACKING_URI, or run "
                f"`skin-cancer run` first (looked for {Path(args.workdir, 'mlflow.db')})"
            )
        os.environ["MLFLOW_TRACKING_URI"] = tracking.local_tracking_uri(args.workdir)


def cmd_predict(args: argparse.Namespace) -> int:
    from components.core.inference.predictor import Predictor
    from pipelines.console import quiet_tensorflow_start, startup_log

    _use_local_registry(args)
    if not args.verbose:  # stdout stays one JSON line per image; TensorFlow's start-up goes to a log
        quiet_tensorflow_start(startup_log(args.workdir, "predict"))
    predictor = Predictor.load(args.model_uri)
    failed = 0
    for start in range(0, len(args.images), PREDICT_BATCH):
        for line in predict_lines(predictor, args.images[start : start + PREDICT_BATCH]):
            failed += "error" in line
            print(json.dumps(line), flush=True)
    if failed:
        print(f"error: {failed} of {len(args.images)} images could not be read; their lines say why", file=sys.stderr)
    return 1 if failed else 0


PREDICT_BATCH = 32
PREDICT_KEYS = ("label", "p_malignant", "decision", "refer_reason", "prediction_set", "ood_score")


def predict_lines(predictor, images: list[str]) -> list[dict]:
    """One JSON line per image, in order: the prediction, or ``{"image", "error"}`` for a file that
    cannot be read or decoded (the batch goes on). One batched forward pass for the readable ones."""
    import numpy as np

    from components.core.data.images import BadImage, decode_image, original_size

    lines: list[dict] = []
    readable: list[tuple[int, np.ndarray, tuple | None]] = []
    for image in images:
        try:
            data = Path(image).read_bytes()
            readable.append((len(lines), decode_image(data, predictor.image_size), original_size(data)))
            lines.append({"image": image})
        except (BadImage, OSError) as err:
            lines.append({"image": image, "error": f"{image}: {err}"})
    if readable:
        results = predictor.predict_pixels(np.stack([px for _, px, _ in readable]), [size for _, _, size in readable])
        for (i, _, _), result in zip(readable, results):
            lines[i].update({k: result[k] for k in PREDICT_KEYS})
    return lines


class _StartupLine(logging.Filter):
    """The server logs its start-up line ("loaded NAME version V from URI ...; serving on
    http://HOST:PORT") at WARNING, so that it shows at the default level. It is news, not a
    warning: the console shows it as a plain line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "; serving on http" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class _QuietUvicornStart(logging.Filter):
    """Leaves out uvicorn's start-up and shutdown steps ("Uvicorn running on ..." and "Shutting
    down" stay, as do the access log and every warning or error)."""

    STEPS = (
        "Started server process",
        "Waiting for application startup",
        "Application startup complete",
        "Waiting for application shutdown",
        "Application shutdown complete",
        "Finished server process",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.STEPS)


def _flag(value: str) -> bool:
    """KServe's boolean flags: true/false, yes/no, 1/0."""
    if value.lower() in ("true", "yes", "1", "on"):
        return True
    if value.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def cmd_serve(args: argparse.Namespace) -> int:
    from components.core.serving.config import ServingSettings
    from pipelines.console import quiet_tensorflow_start, startup_log

    _use_local_registry(args)
    if not args.verbose:
        quiet_tensorflow_start(startup_log(args.workdir, "serve"))
        logging.getLogger("uvicorn.error").addFilter(_QuietUvicornStart())  # kept by uvicorn's dictConfig
    logging.getLogger("components.core.serving.server").addFilter(_StartupLine())
    limits = ServingSettings.from_env(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024) if args.max_upload_mb is not None else None,
        max_pixels=args.max_pixels,
        max_batch=args.max_batch,
        max_batch_size=args.max_batch_size,
        max_latency_ms=args.max_latency_ms,
        model_name=args.model_name,
        model_version=args.model_version,
    )
    from components.core.serving.server import serve  # imports KServe (seconds): after the flags are checked

    kserve_options = {k: getattr(args, k) for k in KSERVE_OPTIONS if getattr(args, k) is not None}
    serve(
        args.model_uri,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port if args.enable_grpc else 0,
        settings=limits,
        **kserve_options,
    )
    return 0


# kserve.ModelServer's own settings, under KServe's flag names (`python -m kserve...` users know them)
KSERVE_OPTIONS = ("max_threads", "max_asyncio_workers", "enable_latency_logging", "access_log_format")


def register(sub) -> None:
    pr = sub.add_parser("predict", help="classify images with a registered model")
    pr.add_argument("--model-uri", default=f"models:/{REGISTERED_MODEL_NAME}@champion")
    pr.add_argument("--workdir", default=DEFAULT_WORKDIR, help="where `skin-cancer run` left its MLflow store")
    pr.add_argument("images", nargs="+")
    pr.set_defaults(func=cmd_predict)
    sv = sub.add_parser("serve", help="inference server: V2 protocol, /predict and the clinician page at /")
    sv.add_argument(
        "--model-uri",
        default=f"models:/{REGISTERED_MODEL_NAME}@champion",
        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a Model artifact "
        "directory (local or s3://) holding model.keras and model.json",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    sv.add_argument(
        "--port",
        "--http_port",
        dest="port",
        type=int,
        default=8080,
        help="HTTP port: V2 REST, /metrics, the page and the upload routes",
    )
    sv.add_argument(
        "--grpc-port",
        "--grpc_port",
        dest="grpc_port",
        type=int,
        default=8081,
        help="V2 gRPC port (0: no gRPC). gRPC listens on every interface, as KServe's server does",
    )
    sv.add_argument(
        "--model-name",
        "--model_name",
        dest="model_name",
        help="name in the V2 paths and answers (default: the registered name)",
    )
    sv.add_argument("--model-version", help="version reported in answers (default: the registry's version)")
    sv.add_argument(
        "--max-upload-mb", type=float, help="largest request body in MiB (default: $SKIN_CANCER_MAX_UPLOAD_MB or 20)"
    )
    sv.add_argument(
        "--max-pixels",
        type=int,
        help="largest image in pixels, against decompression bombs (default: $SKIN_CANCER_MAX_PIXELS or 40,000,000)",
    )
    sv.add_argument("--max-batch", type=int, help="most images in one V2 request (default 32)")
    sv.add_argument(
        "--max-batch-size", type=int, help="adaptive batching: most images in one forward pass (default 16)"
    )
    sv.add_argument(
        "--max-latency-ms",
        type=float,
        help="adaptive batching: how long a request waits for others to share its pass (default 2)",
    )
    ks = sv.add_argument_group("KServe ModelServer flags")
    ks.add_argument("--enable_grpc", type=_flag, default=True, help="serve V2 over gRPC (default true)")
    ks.add_argument("--max_threads", type=int, help="gRPC worker threads (KServe's default 4)")
    ks.add_argument("--max_asyncio_workers", type=int, help="threads that decode images (KServe's default: cores + 4)")
    ks.add_argument("--enable_latency_logging", type=_flag, help="a log line per V2 request with its latencies")
    ks.add_argument("--access_log_format", help="the access log's format (asgi-logger)")
    ks.add_argument("--enable_docs_url", type=_flag, help="Swagger UI at /docs (read by KServe from the command line)")
    ks.add_argument("--configure_logging", type=_flag, help="let KServe configure logging (read by KServe)")
    ks.add_argument("--log_config_file", help="uvicorn log config, YAML or JSON (read by KServe)")
    sv.add_argument(
        "--workdir",
        default=DEFAULT_WORKDIR,
        help="where `skin-cancer run` kept its MLflow store; used when MLFLOW_TRACKING_URI is unset",
    )
    sv.set_defaults(func=cmd_serve)
