"""MLflow tracking: where runs go, what a training run logs, and the clear error when MLflow is down."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_EXPERIMENT = "skin-cancer"


class TrackingError(RuntimeError):
    """MLflow cannot be used; the message names the tracking URI and what to do."""


def local_tracking_uri(workdir: str) -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    """A pipeline parameter wins, then ``MLFLOW_TRACKING_URI``; one of them must be set."""
    resolved = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not resolved:
        raise TrackingError("no MLflow tracking URI: pass mlflow_tracking_uri or set MLFLOW_TRACKING_URI")
    return resolved


def setup(tracking_uri: str | None, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow at ``tracking_uri``, check it answers, and return the experiment id."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is not None:
            return exp.experiment_id
        artifact_location = None
        if uri.startswith("sqlite:///"):
            # A local store keeps its artifacts beside the database, whatever the working directory.
            artifact_location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
        try:
            return mlflow.create_experiment(experiment, artifact_location=artifact_location)
        except Exception:
            exp = mlflow.get_experiment_by_name(experiment)  # created meanwhile by a parallel task
            if exp is None:
                raise
            return exp.experiment_id
    except TrackingError:
        raise
    except Exception as err:
        raise TrackingError(
            f"MLflow tracking server {_redact(uri)} is not usable ({type(err).__name__}); "
            "check that it is running and MLFLOW_TRACKING_URI is right"
        ) from err


def _redact(uri: str) -> str:
    """Drop user:password from a URI before it reaches a message or a log."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password or parts.username:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def log_model(model, threshold: float, image_size: int, family: str):
    """Log a Keras model with signature, raw-pixel input example and its decision threshold."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    example = np.random.default_rng(0).integers(0, 256, (2, image_size, image_size, 3), dtype=np.uint8)
    # Any height and width: the model resizes in its graph, so the signature must not pin them.
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1))]),
    )
    return mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        metadata={"threshold": float(threshold), "image_size": int(image_size), "family": family,
                  "classes": ["benign", "malignant"], "output": "p_malignant"},
    )


def log_json(data: dict, filename: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, filename)
        path.write_text(json.dumps(data, indent=1, default=float))
        mlflow.log_artifact(str(path))


def flat_metrics(prefix: str, metrics: dict) -> dict[str, float]:
    return {
        f"{prefix}_{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not (isinstance(v, float) and np.isnan(v))
    }
