"""MLflow tracking: where runs go, what a training run logs, and the clear error when MLflow is down.

Faults: :func:`setup` probes the server with a short, bounded retry
(``SKIN_CANCER_MLFLOW_STARTUP_RETRIES``, default 3, ``SKIN_CANCER_MLFLOW_STARTUP_TIMEOUT``
seconds per try, default 10), so a server that is down fails the task within seconds with
a :class:`TrackingError`, before any data is read or any model trained. Once running,
MLflow's own client retries transient failures (HTTP 408/429/5xx, resets, timeouts) with
exponential backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7, and
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``), so a blip during a run is ridden out.

Secrets: credentials written into the URI (``http://user:password@host``) are moved to
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` and MLflow only ever sees the
bare URI, so they cannot reach its "View run at" lines, exception messages or logs.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from components.core import settings
from components.core.redaction import redact

log = logging.getLogger(__name__)


class TrackingError(RuntimeError):
    """MLflow cannot be used; the message names the tracking URI and what to do."""


def local_tracking_uri(workdir: str) -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    """A pipeline parameter wins, then ``MLFLOW_TRACKING_URI``; one of them must be set."""
    resolved = uri or settings.tracking_uri()
    if not resolved:
        raise TrackingError("no MLflow tracking URI: pass mlflow_tracking_uri or set MLFLOW_TRACKING_URI")
    return resolved


def use_uri_credentials(uri: str) -> str:
    """Move ``user:password@`` out of an http(s) URI into MLflow's credential variables
    (unless those are set already) and return the bare URI."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not (parts.username or parts.password):
        return uri
    if parts.username and not settings.env("MLFLOW_TRACKING_USERNAME"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username)
    if parts.password and not settings.env("MLFLOW_TRACKING_PASSWORD"):
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
    bare = redact(uri)
    if settings.tracking_uri() == uri:
        os.environ["MLFLOW_TRACKING_URI"] = bare  # child processes inherit the bare URI
    return bare


def _probe(uri: str, experiment: str) -> None:
    """One cheap request with a short, bounded retry: fail in seconds when the server is down."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    retries = settings.env_number("SKIN_CANCER_MLFLOW_STARTUP_RETRIES", int, positive=False)
    timeout = settings.env_number("SKIN_CANCER_MLFLOW_STARTUP_TIMEOUT", float)
    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/get-by-name",
            "GET",
            max_retries=retries,
            backoff_factor=1,
            backoff_jitter=0.5,
            timeout=timeout,
            raise_on_status=False,
            params={"experiment_name": experiment},
        )
    except Exception as err:
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable after {retries + 1} attempts "
            f"({type(err).__name__}); check that it is running and MLFLOW_TRACKING_URI is right"
        ) from None  # the underlying message repeats the URL and request details
    if response.status_code in (401, 403):
        raise TrackingError(
            f"MLflow tracking server {uri} refused the credentials (HTTP {response.status_code}); check "
            "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
        )
    if response.status_code >= 500:
        raise TrackingError(
            f"MLflow tracking server {uri} keeps failing (HTTP {response.status_code} after {retries + 1} "
            "attempts); check the server and its database"
        )
    # 200 (experiment exists) and 404 (not yet) both prove the server answers.


def setup(tracking_uri: str | None, experiment: str = settings.EXPERIMENT) -> str:
    """Point MLflow at ``tracking_uri``, check it answers, and return the experiment id."""
    import mlflow

    uri = use_uri_credentials(resolve_tracking_uri(tracking_uri))
    mlflow.set_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        _probe(uri, experiment)
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
            f"MLflow tracking server {redact(uri)} is not usable ({type(err).__name__}); "
            "check that it is running and MLFLOW_TRACKING_URI is right"
        ) from err


def start_run(experiment_id: str, run_name: str):
    """``mlflow.start_run`` for one of our runs: in ``experiment_id`` (the pipeline's
    ``experiment_name``), nested under KFP's own MLflow run for this task when there is one.

    KFP 2.17's MLflow plugin (``backend/src/v2/common/plugins/mlflow/handler.go``, when an
    administrator enables it) creates a run per task, tagged ``mlflow.parentRunId`` = the KFP run's
    MLflow run, and injects ``MLFLOW_RUN_ID`` (that task run), ``MLFLOW_EXPERIMENT_ID`` and
    ``MLFLOW_TRACKING_URI``; it ends the task run itself (``OnTaskEnd``). A plain
    ``mlflow.start_run(experiment_id=...)`` would *resume* that run, ignoring ``experiment_id``:
    our preprocessing and models would land in KFP's experiment, under KFP's run name, and be
    ended by us before KFP logs to it. So the variable is taken out of the environment (MLflow's
    own ``end_run`` removes it as well) and our run is created as a child of KFP's task run. It stays in our experiment, not KFP's: the
    selection step, the champion comparison and docs/how-it-works.md's "one run per model in experiment
    ``skin-cancer``" all rely on it, across KFP runs. MLflow draws nested runs only within one
    experiment; across experiments the link is the ``mlflow.parentRunId`` tag (search
    ``tags.mlflow.parentRunId = '<KFP task run>'``). A KFP run id that our tracking server does
    not know (the plugin may log to another server) is not used as a parent."""
    import mlflow

    parent = _kfp_task_run()
    os.environ.pop("MLFLOW_RUN_ID", None)  # else mlflow.start_run resumes it
    return mlflow.start_run(experiment_id=experiment_id, run_name=run_name, parent_run_id=parent)


def _kfp_task_run() -> str | None:
    """KFP's MLflow run for this task (``MLFLOW_RUN_ID``), if our tracking server has it."""
    from mlflow import MlflowClient

    run_id = settings.env("MLFLOW_RUN_ID")
    if not run_id:
        return None
    try:
        MlflowClient().get_run(run_id)
    except Exception as err:
        log.warning(
            "MLFLOW_RUN_ID %s (KFP's run for this task) is not on this tracking server (%s); not nesting under it",
            run_id,
            type(err).__name__,
        )
        return None
    return run_id


# What a training run trained on (content hashes of its train split); the champion comparison
# (selection.compare_on_unseen) leaves those images out of validation.
TRAINED_ON_ARTIFACT = "trained_on.json"
# Every model's validation and test scores, for the selection step's comparison figures.
SCORES_ARTIFACT = "scores.json"
FIGURES_DIR = "figures"
DECISION_DIR = "decision"  # the decision policy's files (decision.POLICY_FILES)


@dataclass
class LoggedRun:
    run_id: str
    model_uri: str
    figures: list[str] = field(default_factory=list)  # artifact paths under the run, e.g. figures/val_roc.png


@contextmanager
def training_run(cfg, name: str, experiment_id: str, tags: dict) -> Iterator["TrainingRun"]:
    """One MLflow run for one model, driven by the train step: started with its tags (the KFP
    run, the data) and every hyperparameter; inside, the step logs the datasets it reads
    (``run.datasets = lineage.log_inputs(...)``), trains with ``run.on_epoch`` as the per-epoch
    callback, and logs what came out with :meth:`TrainingRun.log_result`."""
    import mlflow

    with start_run(experiment_id, name) as run:
        mlflow.set_tags(
            {"stage": "train", "model_name": name, "family": cfg.family, "pipeline_run": settings.run_id(), **tags}
        )
        mlflow.log_params({k: v for k, v in cfg.to_dict().items() if k != "extra"} | cfg.extra)
        yield TrainingRun(run.info.run_id, cfg, tags)


@dataclass
class TrainingRun:
    """The active training run of :func:`training_run`."""

    run_id: str
    cfg: object  # train_config.TrainConfig
    tags: dict
    datasets: dict = field(default_factory=dict)  # MLflow datasets by split: metrics link to them

    def on_epoch(self, epoch: int, logs: dict | None) -> None:
        """Keras' per-epoch metrics, at their epoch."""
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)

    def log_result(
        self, result, train_sources: list[dict] = (), figures: dict[str, bytes] | None = None, figures_error: str = ""
    ) -> LoggedRun:
        """What training produced (a TrainResult): the model with its threshold, validation and
        test metrics (linked to the logged model and to the dataset each was computed on),
        cross-validation folds, the evaluation and scores, what it trained on (``trained_on.json``:
        the content hashes of ``train_sources``, which the champion comparison leaves out of
        validation) and the figures (PNG bytes by file name, logged under ``figures/``; when they
        could not be drawn, ``figures_error`` says why, as the run's tag of that name)."""
        import mlflow

        cfg, tags, datasets = self.cfg, self.tags, self.datasets
        policy = getattr(result, "policy", None)
        info = log_model(
            result.model, result.threshold, cfg.image_size, cfg.family, policy.summary() if policy is not None else None
        )
        if policy is not None:
            log_decision_policy(policy, result.referral, info.model_id, datasets)
        # The logged model carries the run's lineage too (the registry's version links to it).
        mlflow.set_logged_model_tags(info.model_id, {k: str(v) for k, v in tags.items() if v not in ("", None)})
        # Linked to the logged model and the dataset: the model's page lists them per dataset.
        # At the step after the last epoch: Keras logged its own val_accuracy (at 0.5, not the
        # chosen threshold) per epoch, and MLflow's run table shows a metric's highest step.
        after = max((len(v) for v in result.history.values()), default=0)
        for split, metrics in (("val", result.val), ("test", result.test)):
            mlflow.log_metrics(
                flat_metrics(split, metrics), step=after, model_id=info.model_id, dataset=datasets.get(split)
            )
        mlflow.log_metrics(
            {"train_seconds": result.seconds, "params": result.params, "temperature": result.temperature}
        )
        for fold in result.fold_scores:
            mlflow.log_metrics({"fold_accuracy": fold["accuracy"], "fold_auc": fold["auc"]}, step=fold["fold"])
        if result.fold_scores:
            accs = [f["accuracy"] for f in result.fold_scores]
            mlflow.log_metrics({"cv_accuracy_mean": float(np.mean(accs)), "cv_accuracy_sd": float(np.std(accs))})
        log_json(
            {
                "val": result.val,
                "test": result.test,
                "folds": result.fold_scores,
                "threshold": result.threshold,
                "history": result.history,
            },
            "evaluation.json",
        )
        log_json({"sha1": sorted({s["sha1"] for s in train_sources}), "count": len(train_sources)}, TRAINED_ON_ARTIFACT)
        log_json(
            {"threshold": result.threshold, "val": _rounded(result.val_scores), "test": _rounded(result.test_scores)},
            SCORES_ARTIFACT,
        )
        if figures_error:
            mlflow.set_tag("figures_error", figures_error[:500])
        logged = log_pngs(figures, FIGURES_DIR) if figures else []
        return LoggedRun(self.run_id, info.model_uri, logged)


def _rounded(scores) -> list[float]:
    """Six decimals: exact enough for any curve, a third of the size of full floats."""
    return [round(float(v), 6) for v in np.asarray(scores).reshape(-1)]


def log_pngs(pngs: dict[str, bytes], artifact_path: str, run_id: str | None = None) -> list[str]:
    """Log PNGs (file name -> bytes) under ``artifact_path`` in one upload; returns their paths."""
    import mlflow

    if not pngs:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        for filename, data in pngs.items():
            Path(tmp, filename).write_bytes(data)
        if run_id:
            mlflow.MlflowClient().log_artifacts(run_id, tmp, artifact_path)
        else:
            mlflow.log_artifacts(tmp, artifact_path)
    return [f"{artifact_path}/{filename}" for filename in sorted(pngs)]


def log_text(text: str, artifact_file: str, run_id: str) -> None:
    """A text artifact (Markdown, HTML: MLflow's artifact view renders both) in run ``run_id``."""
    from mlflow import MlflowClient

    MlflowClient().log_text(run_id, text, artifact_file)


def load_scores(run_id: str) -> dict | None:
    """A training run's :data:`SCORES_ARTIFACT`, or None when the run has none (an older run)."""
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=SCORES_ARTIFACT)
    except Exception:
        return None
    with open(path) as fh:
        return json.load(fh)


def log_decision_policy(policy, referral: dict, model_id: str, datasets: dict) -> None:
    """The decision policy's files (``decision/``, read back by :func:`load_decision_files`) and
    how it referred on validation and test (``val_refer_rate``, ``test_decided_accuracy``...)."""
    import mlflow

    log_policy_files(policy)
    for split in ("val", "test"):
        if split in referral:
            mlflow.log_metrics(flat_metrics(split, referral[split]), model_id=model_id, dataset=datasets.get(split))
    log_json({k: referral[k] for k in referral}, "referral.json")


def log_policy_files(policy) -> None:
    """The policy's files in the active run, under ``decision/``: where Predictor finds them for a
    registered model (the model's metadata holds only the readable summary)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in policy.files().items():
            Path(tmp, name).write_bytes(data)
        mlflow.log_artifacts(tmp, DECISION_DIR)


def load_decision_files(run_id: str) -> dict[str, bytes | None]:
    """The decision policy's files as a training run logged them (None for a missing file)."""
    import mlflow

    from components.core.decision import POLICY_FILES

    out: dict[str, bytes | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in POLICY_FILES:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=f"{DECISION_DIR}/{name}", dst_path=tmp
                )
                out[name] = Path(path).read_bytes()
            except Exception as err:  # noqa: BLE001 - a missing artifact; the policy names what is missing
                log.debug("run %s has no %s: %s", run_id, name, err)
                out[name] = None
    return out


# What a logged model needs to load (MLflow adds itself), pinned at the versions installed here:
# those of the lock (scripts/install.sh, images/requirements.lock). Left to itself MLflow infers the
# same list by loading the model in a subprocess, 15 to 20 s for every logged model.
MODEL_REQUIREMENTS = ("tensorflow", "keras", "numpy", "cloudpickle")


def model_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS]


def log_model(model, threshold: float, image_size: int, family: str, decision: dict | None = None):
    """Log a Keras model with signature, raw-pixel input example, its decision threshold and the
    readable part of its decision policy (the arrays are run artifacts, ``decision/``)."""
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
        pip_requirements=model_requirements(),
        metadata={
            "threshold": float(threshold),
            "image_size": int(image_size),
            "family": family,
            "classes": list(settings.CLASSES),
            "output": "p_malignant",
            **({"decision": decision} if decision is not None else {}),
        },
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
