"""Submit runs and manage recurring runs on a Kubeflow Pipelines cluster, through ``kfp.Client``.

Plain functions: ``skin-cancer submit`` and ``skin-cancer schedule create|list|delete``
(pipelines/cli.py) parse flags and call these. Every call compiles the pipeline first, so
what runs is exactly what ``skin-cancer compile`` would write with the same settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from components.core import settings

TOKEN_ENV = "KFP_TOKEN"  # bearer token for the KFP API (an env var keeps it out of shell history and ps)
HOST_ENV = "KF_PIPELINES_ENDPOINT"  # kfp.Client's own variable for the API address
# Where a Kubeflow notebook has its KFP token: the PodDefault "access-ml-pipeline" projects a
# ServiceAccount token with audience pipelines.kubeflow.org there. kfp.Client reads it only when
# given no host, and these commands always give one, so they read it themselves.
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"


class SubmitError(ValueError):
    """Something to fix before anything is sent to the cluster."""


# --- parameters --------------------------------------------------------------------------


def pipeline_parameters(package_path: str) -> dict[str, dict]:
    """The compiled pipeline's inputs: name -> {"type": parameterType, "required": bool}."""
    import yaml

    with open(package_path) as fh:
        spec = next(yaml.safe_load_all(fh))
    params = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {
        name: {"type": p["parameterType"], "required": not p.get("isOptional", False)} for name, p in params.items()
    }


def parse_params(pairs: list[str], declared: dict[str, dict]) -> dict:
    """``KEY=VALUE`` strings -> typed arguments, checked against the pipeline's declared inputs.

    Values are typed by the parameter's declared type, not guessed: ``data_uri=123`` stays
    a string, ``epochs=5`` becomes an int, ``models=[...]`` is parsed as JSON.
    """
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SubmitError(f"--param {pair!r}: expected KEY=VALUE")
        if key not in declared:
            raise SubmitError(
                f"--param {key}: the pipeline has no such parameter; it has: {', '.join(sorted(declared))}"
            )
        out[key] = _typed(key, raw, declared[key]["type"])
        if key == "models":
            _check_models(out[key])
        if "://" in raw and _has_password(raw):
            raise SubmitError(
                f"--param {key}: the URI holds a password; run parameters are stored and shown in "
                "the dashboard: put credentials in the Kubernetes Secret instead (manifests/README.md)"
            )
    missing = [k for k, d in declared.items() if d["required"] and k not in out]
    if missing:
        raise SubmitError(f"missing required parameter(s): {', '.join(missing)} (pass --param {missing[0]}=...)")
    return out


def _check_models(models) -> None:
    """``models=[...]``: every model config checked here, not first inside a training task."""
    from components.core.modeling.train_config import model_configs

    try:
        model_configs(models)
    except ValueError as err:
        raise SubmitError(f"--param models: {err}") from None


def _has_password(uri: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(uri).password)
    except ValueError:
        return False


def _typed(key: str, raw: str, kind: str):
    try:
        if kind == "STRING":
            return raw
        if kind == "NUMBER_INTEGER":
            return int(raw)
        if kind == "NUMBER_DOUBLE":
            return float(raw)
        if kind == "BOOLEAN":
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
        value = json.loads(raw)  # LIST / STRUCT
    except ValueError:
        raise SubmitError(f"--param {key}={raw!r}: not a valid {kind.lower().replace('number_', '')}") from None
    expected = list if kind == "LIST" else dict
    if not isinstance(value, expected):
        raise SubmitError(f"--param {key}: expected a JSON {expected.__name__}, got {type(value).__name__}")
    return value


# --- cron (KFP's scheduler: robfig/cron v1, six fields, seconds first) ---------------------

_CRON_FIELDS = (  # name, low, high, names
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    ("day of week", 0, 6, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
)
_CRON_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def validate_cron(expr: str) -> str:
    """Check a KFP cron expression before it is sent; return it normalised (single spaces).

    KFP's scheduler parses with robfig/cron v1: six fields, SECONDS FIRST, and a missing
    sixth field is silently taken as "any day of week", so a five-field crontab such as
    ``0 3 * * *`` would run hourly at minute 3 instead of daily at 03:00. Five fields are
    therefore refused with the six-field spelling suggested.
    """
    text = " ".join(expr.split())
    if text.lower() in _CRON_DESCRIPTORS:
        return text.lower()
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        raise SubmitError(f"cron {expr!r} has 5 fields; KFP uses 6 with seconds first: did you mean '0 {text}'?")
    if len(fields) != 6:
        raise SubmitError(
            f"cron {expr!r} has {len(fields)} fields; KFP needs 6: second minute hour day-of-month month day-of-week"
        )
    for value, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for part in value.split(","):
            _check_cron_part(expr, part, name, low, high, names)
    return text


def _check_cron_part(expr: str, part: str, name: str, low: int, high: int, names: list[str] | None) -> None:
    def bad(why: str) -> SubmitError:
        return SubmitError(f"cron {expr!r}: {name} field {part!r}: {why}")

    def number(token: str) -> int:
        if names and token.lower() in names:
            return names.index(token.lower()) + low
        if not token.isdigit():
            raise bad(f"{token!r} is not a number{' or name' if names else ''}")
        n = int(token)
        if not low <= n <= high:
            raise bad(f"{n} is outside {low}-{high}")
        return n

    rng, slash, step = part.partition("/")
    if slash and (not step.isdigit() or int(step) == 0):
        raise bad("a step must be a positive number")
    if rng in ("*", "?"):
        return
    start, dash, end = rng.partition("-")
    first = number(start)
    if dash and number(end) < first:
        raise bad("a range must not run backwards")


# --- the client ----------------------------------------------------------------------------


@dataclass
class Target:
    """Where runs go: the KFP API, the namespace (multi-user Kubeflow), the dashboard."""

    host: str
    namespace: str | None = None
    token: str | None = field(default=None, repr=False)  # never printed
    ui_url: str | None = None  # dashboard base, e.g. https://kubeflow.example.com/_/pipeline; default: host

    @property
    def dashboard(self) -> str:
        return (self.ui_url or self.host).rstrip("/")


def resolve_target(host: str | None, namespace: str | None, token: str | None, ui_url: str | None) -> Target:
    """Where to send, and the bearer token: ``--token``, else ``$KFP_TOKEN``, else a notebook's
    projected KFP token (``$KF_PIPELINES_SA_TOKEN_PATH``), else none."""
    host = host or settings.env(HOST_ENV)
    if not host:
        raise SubmitError(f"no KFP API address: pass --host URL or set {HOST_ENV}")
    return Target(
        host=host, namespace=namespace, token=token or settings.env(TOKEN_ENV) or projected_token(), ui_url=ui_url
    )


def projected_token() -> str | None:
    """The KFP token projected into this pod (a Kubeflow notebook), or None when there is none.
    Read at each command: the kubelet rotates the file."""
    try:
        return Path(settings.env(SA_TOKEN_PATH_ENV)).read_text().strip() or None
    except OSError:
        return None


def check_approval_arguments(arguments: dict, declared: dict, settings) -> dict:
    """A pipeline compiled with require_approval has no deploy task: ``deploy=true`` would silently
    do nothing, so it is refused. Fills in ``submitted_by`` (the approval evidence's submitter)."""
    if getattr(settings, "require_approval", False) and str(arguments.get("deploy", "")).lower() in ("true", "1"):
        raise SubmitError(
            "deploy=true: this pipeline requires approval and has no deploy task; a person approves the proposed "
            "version with `skin-cancer approve VERSION --reason ... --deploy` (docs/approval.md). Nothing was sent"
        )
    if "submitted_by" in declared and not arguments.get("submitted_by"):
        from components.core.registry.approval import submitter

        arguments = {**arguments, "submitted_by": submitter()}
    return arguments


def check_serving_namespace(arguments: dict, namespace: str | None) -> None:
    """Refuse a ``serving_namespace`` other than the run's own namespace, before anything is sent.

    What the deploy and smoke-test steps need is only in the namespace the manifests were applied
    to (manifests/base): the Role that lets the run's account create InferenceServices, the
    serving account with the S3 Secret KServe fetches the model with, and the Istio policy that
    admits the smoke test. Another namespace has none of them, so the run would train and
    register, then fail at deploy (403) or serve a model that cannot load."""
    wanted = str(arguments.get("serving_namespace") or "")
    if not wanted or wanted == namespace:
        return
    raise SubmitError(
        f"serving_namespace={wanted!r} is not the namespace the run goes to ({namespace or 'none given: --namespace'}); "
        "the Role, the serving account's S3 Secret and the Istio policy exist only where the manifests were "
        "applied, so deploy would fail there. Leave serving_namespace empty (the run's own namespace), or "
        "apply manifests/ to that namespace and submit the run there (docs/cluster.md)"
    )


@contextlib.contextmanager
def api_errors(target: Target):
    """Turn the KFP API's HTTP errors and connection failures into one clear message."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as err:
        body = (err.body or b"")[:300]
        body = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        hint = {
            401: "check the token (--token or $" + TOKEN_ENV + ")",
            403: "the token's user may not use this namespace",
        }.get(err.status, "")
        raise SubmitError(
            f"KFP API {target.host} answered {err.status} {err.reason}: {body.strip()}" + (f"; {hint}" if hint else "")
        ) from None
    except urllib3.exceptions.HTTPError as err:
        raise SubmitError(
            f"cannot reach the KFP API at {target.host} ({type(err).__name__}); "
            "check --host (e.g. kubectl port-forward svc/ml-pipeline-ui 8080:80)"
        ) from None


def client(target: Target):
    import kfp

    # namespace=None would make kfp.Client fall back to "kubeflow"; passing the user's
    # namespace sets it for this client only.
    kwargs = {"namespace": target.namespace} if target.namespace else {}
    return kfp.Client(host=target.host, existing_token=target.token, **kwargs)


def check_backend_version(kfp_client, target: Target, package: str) -> str:
    """The KFP backend's release (from healthz, answered by the API server or by the UI server in
    front of it: backend_compat.read_healthz); refuses one older than a feature the compiled
    pipeline uses, naming the feature (pipelines/backend_compat.py).

    A build that reports no release number (``unknown``: a development build) is let through
    with a warning: its features cannot be told from its version. Anything else that cannot be
    read is refused: letting it through is how an old backend got runs that failed in its driver."""
    import sys

    from pipelines import backend_compat

    response = kfp_client._healthz_api.healthz_service_get_healthz(_preload_content=False)
    where = f"{target.host.rstrip('/')}/apis/v2beta1/healthz"
    try:
        answer = json.loads(response.data or b"{}")
    except ValueError:
        raise SubmitError(
            f"{where} answered HTTP {response.status} with {response.headers.get('Content-Type') or 'no type'}, "
            "not JSON: a login page? On a multi-user Kubeflow pass a token (--token or $"
            + TOKEN_ENV
            + '; docs/cluster.md, "Authentication"), and check that --host is KFP\'s API or UI server'
        ) from None
    health = backend_compat.read_healthz(answer if isinstance(answer, dict) else {})
    if health is None:
        raise SubmitError(
            f"{where} answered without a KFP release (no tag_name, no apiServerTagName): "
            f"is --host KFP's API or UI server? Nothing was sent"
        )
    if not health.api_ready:
        raise SubmitError(
            f"KFP's UI server at {target.host} (release {health.frontend or 'unknown'}) reports its "
            "API server not ready (apiServerReady false), so the backend release cannot be checked; "
            "nothing was sent: check `kubectl -n kubeflow get deploy ml-pipeline` and try again"
        )
    version = health.release
    if backend_compat.parse_version(version) is None:
        print(
            f"warning: KFP at {target.host} reports release {version!r} ({health.server}); cannot check it "
            f"against the minimum {backend_compat.MIN_BACKEND_VERSION}",
            file=sys.stderr,
        )
        return version
    missing = backend_compat.too_new_for(version, *backend_compat.load_compiled(package))
    if missing:
        raise SubmitError(
            f"KFP at {target.host} is release {version}; this pipeline needs {backend_compat.MIN_BACKEND_VERSION} "
            "or later for: "
            + "; ".join(f"{f.name} (since {f.since}, {f.source})" for f in missing)
            + ". Upgrade Kubeflow Pipelines (docs/cluster.md)"
        )
    return version


def compile_package(settings, path: str) -> str:
    """Compile the pipeline ``settings`` is for to ``path``: the training pipeline
    (CompileSettings) or the scoring pipeline (scoring_pipeline.ScoringSettings)."""
    from kfp import compiler

    from components.core.modeling.train_config import model_configs
    from pipelines.deploy_pipeline import DeploySettings, build_deploy_pipeline
    from pipelines.scoring_pipeline import ScoringSettings, build_scoring_pipeline
    from pipelines.training_pipeline import DEFAULT_MODELS, build_pipeline

    if isinstance(settings, ScoringSettings):
        compiler.Compiler().compile(build_scoring_pipeline(settings), package_path=path)
        return path
    if isinstance(settings, DeploySettings):
        compiler.Compiler().compile(build_deploy_pipeline(settings), package_path=path)
        return path

    if settings.parameter_defaults.get("serving_namespace"):
        # Compiled in, it cannot be checked against the namespace a run goes to (check_serving_namespace).
        raise SubmitError(
            "a compiled-in serving_namespace default is refused: leave it empty (each run serves in "
            "its own namespace) or pass --param serving_namespace=NS to submit, which checks it"
        )
    models = (settings.parameter_defaults or {}).get("models", DEFAULT_MODELS)
    model_configs(models)  # a bad model config fails the compile, naming the key, not a later run
    compiler.Compiler().compile(
        build_pipeline(settings), package_path=path, pipeline_parameters=settings.parameter_defaults or None
    )
    return path


def spec_digest(package_path: str) -> str:
    """A digest of the compiled spec's content (not its bytes: comment order may vary)."""
    import yaml

    with open(package_path) as fh:
        docs = list(yaml.safe_load_all(fh))
    return hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Submitted:
    run_id: str
    experiment_id: str
    url: str


def submit(
    target: Target,
    settings,
    params: list[str],
    experiment: str,
    run_name: str | None,
    service_account: str | None,
    enable_caching: bool | None = None,
) -> Submitted:
    """Compile, then create one run in ``experiment`` (created when missing)."""
    import datetime

    with tempfile.TemporaryDirectory() as tmp:
        package = compile_package(settings, str(Path(tmp, "pipeline.yaml")))
        pipeline_name = package_pipeline_name(package)
        declared = pipeline_parameters(package)
        arguments = check_approval_arguments(parse_params(params, declared), declared, settings)
        check_serving_namespace(arguments, target.namespace)
        with api_errors(target):
            kfp_client = client(target)
            check_backend_version(kfp_client, target, package)
            result = kfp_client.create_run_from_pipeline_package(
                package,
                arguments=arguments,
                run_name=run_name or f"{pipeline_name} {datetime.datetime.now():%Y-%m-%d %H:%M:%S}",
                experiment_name=experiment,
                namespace=target.namespace,
                service_account=service_account or None,
                enable_caching=enable_caching,
            )
    run = result.run_info
    return Submitted(run.run_id, run.experiment_id, f"{target.dashboard}/#/runs/details/{run.run_id}")


@dataclass
class Scheduled:
    recurring_run_id: str
    pipeline_id: str
    version_id: str
    experiment_id: str
    url: str


def ensure_pipeline_version(kfp_client, package: str, pipeline_name: str, namespace: str | None) -> tuple[str, str]:
    """Upload ``package`` as a version of ``pipeline_name`` unless that exact spec is there already.

    The version is named by the spec's digest, so re-running ``schedule create`` with an
    unchanged pipeline reuses the version instead of piling up copies.
    """
    version_name = f"{pipeline_name}-{spec_digest(package)}"
    found = (
        kfp_client.list_pipelines(
            filter=json.dumps(
                {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": pipeline_name}]}
            ),
            namespace=namespace,
        ).pipelines
        or []
    )
    if not found:
        pipeline = kfp_client.upload_pipeline(
            package, pipeline_name=pipeline_name, namespace=namespace, description=_description(package)
        )
        versions = (
            kfp_client.list_pipeline_versions(
                pipeline.pipeline_id, page_size=1, sort_by="created_at desc"
            ).pipeline_versions
            or []
        )
        if not versions:
            raise SubmitError(f"uploaded pipeline {pipeline_name} but the server lists no version of it")
        return pipeline.pipeline_id, versions[0].pipeline_version_id
    pipeline_id = found[0].pipeline_id
    versions = (
        kfp_client.list_pipeline_versions(pipeline_id, page_size=100, sort_by="created_at desc").pipeline_versions or []
    )
    for v in versions:
        if version_name in (v.name, v.display_name):
            return pipeline_id, v.pipeline_version_id
    version = kfp_client.upload_pipeline_version(
        package, version_name, pipeline_id=pipeline_id, description=_description(package)
    )
    return pipeline_id, version.pipeline_version_id


def _pipeline_info(package: str) -> dict:
    import yaml

    with open(package) as fh:
        return next(yaml.safe_load_all(fh)).get("pipelineInfo", {})


def _description(package: str) -> str | None:
    return _pipeline_info(package).get("description")


def package_pipeline_name(package: str) -> str:
    """The compiled pipeline's name (skin-cancer-training or skin-cancer-scoring): what runs are
    named after and which KFP pipeline a schedule's version is uploaded to."""
    return _pipeline_info(package)["name"]


def create_schedule(
    target: Target,
    settings,
    params: list[str],
    cron: str,
    name: str,
    experiment: str,
    max_concurrency: int = 1,
    catchup: bool = False,
    service_account: str | None = None,
    pipeline_name: str | None = None,
    enabled: bool = True,
) -> Scheduled:
    """Validate the cron, upload the compiled pipeline as a version, create the recurring run."""
    from pipelines.backend_compat import MAX_RECURRING_CONCURRENCY as MAX_CONCURRENCY

    cron = validate_cron(cron)
    if not 1 <= max_concurrency <= MAX_CONCURRENCY:
        raise SubmitError(
            f"--max-concurrency must be at least 1 and at most {MAX_CONCURRENCY} (the KFP API's "
            f"limit for a recurring run), got {max_concurrency}"
        )
    if not name.strip():
        raise SubmitError("a recurring run needs a name")
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_package(settings, str(Path(tmp, "pipeline.yaml")))
        declared = pipeline_parameters(package)
        arguments = check_approval_arguments(parse_params(params, declared), declared, settings)
        check_serving_namespace(arguments, target.namespace)
        with api_errors(target):
            kfp_client = client(target)
            check_backend_version(kfp_client, target, package)
            pipeline_id, version_id = ensure_pipeline_version(
                kfp_client, package, pipeline_name or package_pipeline_name(package), target.namespace
            )
            exp = kfp_client.create_experiment(experiment, namespace=target.namespace)
            job = kfp_client.create_recurring_run(
                experiment_id=exp.experiment_id,
                job_name=name,
                cron_expression=cron,
                max_concurrency=max_concurrency,
                no_catchup=not catchup,
                params=arguments,
                pipeline_id=pipeline_id,
                version_id=version_id,
                enabled=enabled,
                service_account=service_account or None,
            )
    return Scheduled(
        job.recurring_run_id,
        pipeline_id,
        version_id,
        exp.experiment_id,
        f"{target.dashboard}/#/recurringrun/details/{job.recurring_run_id}",
    )


def list_schedules(target: Target, experiment: str | None = None) -> list[dict]:
    with api_errors(target):
        return _list_schedules(client(target), target, experiment)


def _list_schedules(kfp_client, target: Target, experiment: str | None) -> list[dict]:
    experiment_id = None
    if experiment:
        experiment_id = kfp_client.get_experiment(experiment_name=experiment, namespace=target.namespace).experiment_id
    rows, token = [], ""
    while True:
        page = kfp_client.list_recurring_runs(
            page_token=token, page_size=100, experiment_id=experiment_id, namespace=target.namespace
        )
        for r in page.recurring_runs or []:
            cron = r.trigger.cron_schedule.cron if r.trigger and r.trigger.cron_schedule else None
            rows.append(
                {
                    "id": r.recurring_run_id,
                    "name": r.display_name,
                    "cron": cron,
                    "status": r.status or r.mode,
                    "max_concurrency": r.max_concurrency,
                    "no_catchup": r.no_catchup,
                }
            )
        token = page.next_page_token
        if not token:
            return rows


def delete_schedule(target: Target, recurring_run_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9-]+", recurring_run_id or ""):
        raise SubmitError(f"{recurring_run_id!r} is not a recurring run id")
    with api_errors(target):
        client(target).delete_recurring_run(recurring_run_id)
