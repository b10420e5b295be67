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
    from components.core import settings, tracking

    if args.model_uri.startswith(("models:/", "runs:/")) and not settings.tracking_uri():
        # The registry `skin-cancer run` wrote, so `run` then `serve` needs no setup.
        if not Path(args.workdir, "mlflow.db").is_file():
            raise ValueError(f"no MLflow registry to load {args.model_uri} from: set MLFLOW_TRACKING_URI, or run "
                             f"`skin-cancer run` first (looked for {Path(args.workdir, 'mlflow.db')})")
        os.environ["MLFLOW_TRACKING_URI"] = tracking.local_tracking_uri(args.workdir)


def cmd_predict(args: argparse.Namespace) -> int:
    from components.core.predictor import Predictor
    from pipelines.console import quiet_tensorflow_start, startup_log

    _use_local_registry(args)
    if not args.verbose:  # stdout stays one JSON line per image; TensorFlow's start-up goes to a log
        quiet_tensorflow_start(startup_log(args.workdir, "predict"))
    predictor = Predictor.load(args.model_uri)
    failed = 0
    for start in range(0, len(args.images), PREDICT_BATCH):
        for line in predict_lines(predictor, args.images[start:start + PREDICT_BATCH]):
            failed += "error" in line
            print(json.dumps(line), flush=True)
    if failed:
        print(f"error: {failed} of {len(args.images)} images could not be read; their lines say why",
              file=sys.stderr)
    return 1 if failed else 0


PREDICT_BATCH = 32
PREDICT_KEYS = ("label", "p_malignant", "decision", "refer_reason", "prediction_set", "ood_score")


def predict_lines(predictor, images: list[str]) -> list[dict]:
    """One JSON line per image, in order: the prediction, or ``{"image", "error"}`` for a file that
    cannot be read or decoded (the batch goes on). One batched forward pass for the readable ones."""
    import numpy as np

    from components.core.images import BadImage, decode_image, original_size

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

    STEPS = ("Started server process", "Waiting for application startup", "Application startup complete",
             "Waiting for application shutdown", "Application shutdown complete", "Finished server process")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.STEPS)


def cmd_serve(args: argparse.Namespace) -> int:
    from components.core.serving import ServingSettings, serve
    from pipelines.console import quiet_tensorflow_start, startup_log

    _use_local_registry(args)
    if not args.verbose:
        quiet_tensorflow_start(startup_log(args.workdir, "serve"))
        logging.getLogger("uvicorn.error").addFilter(_QuietUvicornStart())  # kept by uvicorn's dictConfig
    logging.getLogger("components.core.serving.app").addFilter(_StartupLine())
    limits = ServingSettings.from_env(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024) if args.max_upload_mb is not None else None,
        max_pixels=args.max_pixels, max_batch=args.max_batch,
        model_name=args.model_name, model_version=args.model_version,
    )
    serve(args.model_uri, host=args.host, port=args.port, settings=limits)
    return 0


def register(sub) -> None:
    pr = sub.add_parser("predict", help="classify images with a registered model")
    pr.add_argument("--model-uri", default=f"models:/{REGISTERED_MODEL_NAME}@champion")
    pr.add_argument("--workdir", default=DEFAULT_WORKDIR, help="where `skin-cancer run` left its MLflow store")
    pr.add_argument("images", nargs="+")
    pr.set_defaults(func=cmd_predict)
    sv = sub.add_parser("serve", help="inference server: V2 protocol, /predict and the clinician page at /")
    sv.add_argument("--model-uri", default=f"models:/{REGISTERED_MODEL_NAME}@champion",
                    help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a Model artifact "
                         "directory (local or s3://) holding model.keras and model.json")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    sv.add_argument("--port", type=int, default=8080)
    sv.add_argument("--model-name", help="name in the V2 paths and answers (default: the registered name)")
    sv.add_argument("--model-version", help="version reported in answers (default: the registry's version)")
    sv.add_argument("--max-upload-mb", type=float,
                    help="largest request body in MiB (default: $SKIN_CANCER_MAX_UPLOAD_MB or 20)")
    sv.add_argument("--max-pixels", type=int,
                    help="largest image in pixels, against decompression bombs (default: $SKIN_CANCER_MAX_PIXELS "
                         "or 40,000,000)")
    sv.add_argument("--max-batch", type=int, help="most images in one V2 request (default 32)")
    sv.add_argument("--workdir", default=DEFAULT_WORKDIR,
                    help="where `skin-cancer run` kept its MLflow store; used when MLFLOW_TRACKING_URI is unset")
    sv.set_defaults(func=cmd_serve)
