"""Every setting of the project, defined once: environment variables, defaults and shared names.

The rest of the code receives values from here; nothing else reads ``os.environ`` for a
setting (the environment is still *written* elsewhere where a library reads it, e.g. MLflow's
credential variables). Environment variables are read when a function below is called, never at
import, so a command line can set them first. docs/settings.md lists the same table
(``tests/test_settings.py`` checks that it matches :data:`ENV`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata

# --- shared names --------------------------------------------------------------------------
DISTRIBUTION = "skin-cancer-kfp"
CLASSES = ("benign", "malignant")  # list index == integer label
REGISTERED_MODEL_NAME = "skin-cancer-classifier"
EXPERIMENT = "skin-cancer"
PIPELINE_NAME = "skin-cancer-training"
PIPELINE_SERVICE_ACCOUNT = "skin-cancer-pipeline"  # runs use it (manifests/base/rbac.yaml)
SERVING_SERVICE_ACCOUNT = "skin-cancer-serving"  # the served model's (manifests/base/rbac.yaml)
IMAGE_REPOSITORY = "ghcr.io/skin-cancer-kfp"
# Kubernetes objects the tasks read (manifests/); their names are pipeline parameters defaulting to these.
S3_SECRET = "skin-cancer-s3"
MLFLOW_SECRET = "skin-cancer-mlflow"
CONFIG_MAP = "skin-cancer-config"


def version() -> str:
    """The installed project's version (pyproject.toml is the one place it is written)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def default_images() -> tuple[str, str]:
    """(runtime image, training image) references for this version."""
    tag = version()
    return f"{IMAGE_REPOSITORY}/skin-cancer:{tag}", f"{IMAGE_REPOSITORY}/skin-cancer-gpu:{tag}"


# --- data and training defaults (the pipeline's parameters default to these) ---------------------
SEED = 42
IMAGE_SIZE = 192  # the local-cpu preset's: EfficientNet-Lite0 below its native 224 px, to fit 20 min on 2 cores
# Referral (components/core/decision): the conformal coverage level of each class's prediction
# set (both classes in the set means "refer, uncertain"), and the share of in-scope validation
# images the out-of-scope detector may flag. docs/referral.md measures both.
REFER_COVERAGE = 0.95
OOD_FALSE_FLAG_RATE = 0.005
VAL_FRACTION = 0.15
MAX_BAD_FRACTION = 0.01
# Batch scoring (components/core/scoring): images per forward pass, the share of unreadable files
# a scoring run tolerates, and monitoring's significance level and the fewest images it judges.
SCORING_PIPELINE_NAME = "skin-cancer-scoring"
DEPLOY_PIPELINE_NAME = "skin-cancer-deploy"
SCORE_BATCH = 64
SCORING_MAX_BAD_FRACTION = 0.2
DRIFT_ALPHA = 0.01
DRIFT_MIN_IMAGES = 30


# --- environment variables -----------------------------------------------------------------------
@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str  # as written in docs/settings.md; "" means unset
    meaning: str


ENV: tuple[EnvVar, ...] = (
    EnvVar("MLFLOW_TRACKING_URI", "", "MLflow tracking server; `skin-cancer run` falls back to `<workdir>/mlflow.db`"),
    EnvVar(
        "MLFLOW_TRACKING_USERNAME", "", "MLflow credentials (on a cluster from the optional Secret `mlflow_secret`)"
    ),
    EnvVar("MLFLOW_TRACKING_PASSWORD", "", "MLflow credentials (never logged, never a parameter)"),
    EnvVar("SKIN_CANCER_MLFLOW_STARTUP_RETRIES", "3", "probes of the MLflow server before a step gives up"),
    EnvVar("SKIN_CANCER_MLFLOW_STARTUP_TIMEOUT", "10", "seconds per MLflow probe"),
    EnvVar("AWS_ENDPOINT_URL", "", "S3 endpoint (MinIO, moto); read by boto3 itself"),
    EnvVar("AWS_ACCESS_KEY_ID", "", "S3 credentials; read by boto3 itself"),
    EnvVar("AWS_SECRET_ACCESS_KEY", "", "S3 credentials; read by boto3 itself"),
    EnvVar("AWS_DEFAULT_REGION", "us-east-1", "S3 region (`AWS_REGION` also accepted)"),
    EnvVar("AWS_MAX_ATTEMPTS", "8", "attempts per S3 request, the first included"),
    EnvVar("SKIN_CANCER_S3_CONNECT_TIMEOUT", "10", "seconds to connect to S3, per attempt"),
    EnvVar("SKIN_CANCER_S3_READ_TIMEOUT", "60", "seconds between bytes from S3, per attempt"),
    EnvVar(
        "SKIN_CANCER_S3_BODY_DEADLINE", "120", "seconds for one GET's whole body, per attempt (a body that trickles)"
    ),
    EnvVar("SKIN_CANCER_REGISTRY_LOCK_TTL", "900", "seconds a champion-lock holder may keep it"),
    EnvVar("SKIN_CANCER_REGISTRY_LOCK_WAIT", "1800", "seconds a run waits for the champion lock"),
    EnvVar("SKIN_CANCER_FOUR_EYES", "0", "`1`: `skin-cancer approve` refuses the person who submitted the run"),
    EnvVar("SKIN_CANCER_MAX_UPLOAD_MB", "20", "largest upload the server accepts"),
    EnvVar("SKIN_CANCER_MAX_PIXELS", "40000000", "largest decoded image the server accepts"),
    EnvVar("SKIN_CANCER_BODY_TIMEOUT_S", "30", "seconds the server waits for the next piece of a body"),
    EnvVar("KFP_RUN_ID", "", "the KFP run a task belongs to (the pod's `pipeline/runid` label); an MLflow tag"),
    EnvVar("KF_PIPELINES_ENDPOINT", "", "KFP API address for `submit`/`schedule` (or `--host`)"),
    EnvVar("KFP_TOKEN", "", "bearer token for the KFP API (or `--token`)"),
    EnvVar(
        "KF_PIPELINES_SA_TOKEN_PATH",
        "/var/run/secrets/kubeflow/pipelines/token",
        "a Kubeflow notebook's projected KFP token, used by `submit`/`schedule` when no token is given",
    ),
    EnvVar("MLFLOW_RUN_ID", "", "set by KFP 2.17's MLflow plugin: its run for the task; ours nest under it"),
    EnvVar("SKIN_CANCER_IMAGE", "", "runtime image for `compile`/`submit`/`schedule` (or `--image`)"),
    EnvVar("SKIN_CANCER_TRAIN_IMAGE", "", "training image (or `--train-image`; default: the runtime image's sibling)"),
    EnvVar("KUBECONFIG", "", "cluster access of the deploy step outside a pod"),
    EnvVar(
        "KERAS_HOME",
        "",
        "Keras' cache (default `~/.keras`); the converted EfficientNet-Lite ImageNet weights go to its `models/`",
    ),
)
_DEFAULTS = {e.name: e.default for e in ENV}


class SettingError(ValueError):
    """An environment variable holds something unusable; the message names it."""


def env(name: str) -> str:
    """The variable's value, else its documented default (only declared names may be read)."""
    if name not in _DEFAULTS:
        raise KeyError(f"{name} is not a declared setting (components/core/settings.py ENV)")
    return os.environ.get(name) or _DEFAULTS[name]


def env_number(name: str, kind=float, positive: bool = True):
    raw = env(name)
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number") from None
    if positive and not value > 0:
        raise SettingError(f"{name} must be positive, got {raw!r}")
    return value


def s3_region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or _DEFAULTS["AWS_DEFAULT_REGION"]


def tracking_uri() -> str:
    return env("MLFLOW_TRACKING_URI")


def run_id() -> str:
    return env("KFP_RUN_ID")


def images(image: str | None = None, train_image: str | None = None) -> tuple[str, str]:
    """(runtime, training) images: flags, then ``SKIN_CANCER_IMAGE``/``SKIN_CANCER_TRAIN_IMAGE``,
    then this version's defaults. A runtime image given alone serves for training too."""
    default_runtime, default_train = default_images()
    chosen = image or env("SKIN_CANCER_IMAGE")
    runtime = chosen or default_runtime
    return runtime, train_image or env("SKIN_CANCER_TRAIN_IMAGE") or (runtime if chosen else default_train)
