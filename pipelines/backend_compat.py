"""Which Kubeflow Pipelines backend can run the compiled pipeline, and why.

``kfp.local`` and the SDK's compiler accept features that an older KFP backend does not
know: an older driver silently drops an unknown field (an ``optional: true`` Secret then
becomes a required one) or fails at run time. Every feature the compiled YAML uses is
listed here with the first backend release that handles it, found in the backend's git
history (kubeflow/pipelines, ``backend/src/v2``). ``tests/test_ir_backend_rules.py`` checks
that the compiled YAML of every preset uses nothing newer than ``MIN_BACKEND_VERSION``, and
``skin-cancer submit`` / ``schedule create`` refuse a backend older than what the YAML needs.

The backend's release comes from ``/apis/v2beta1/healthz``, which two servers answer in two
shapes (:func:`read_healthz`): the API server itself, and KFP's UI server, which is what
``kubectl port-forward svc/ml-pipeline-ui`` and the Kubeflow ingress (``/pipeline``) reach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

# The newest feature below that the pipeline uses (a ParallelFor feeding dsl.Collected).
MIN_BACKEND_VERSION = "2.16.0"
# The API server refuses a recurring run's max_concurrency outside 1..10
# (backend/src/apiserver/server/api_converter.go, "must be at least 1 and at most 10").
MAX_RECURRING_CONCURRENCY = 10


def _tasks(spec: dict) -> Iterator[tuple[str, dict]]:
    """(component name, task) for every task: at the root and inside loops and conditions."""
    dags = [("root", spec["root"])] + [(n, c) for n, c in spec["components"].items() if "dag" in c]
    for owner, comp in dags:
        for task in comp["dag"]["tasks"].values():
            yield owner, task


def _executors(platform: dict) -> list[dict]:
    return list(
        ((platform.get("platforms") or {}).get("kubernetes") or {})
        .get("deploymentSpec", {})
        .get("executors", {})
        .values()
    )


def _containers(spec: dict) -> list[dict]:
    return [e["container"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e]


def _loops(spec: dict) -> list[dict]:
    return [t for _, t in _tasks(spec) if "parameterIterator" in t or "artifactIterator" in t]


def _collected(spec: dict) -> bool:
    """A loop's DAG that returns a parameter: what dsl.Collected compiles to."""
    for loop in _loops(spec):
        comp = spec["components"][loop["componentRef"]["name"]]
        if (comp["dag"].get("outputs") or {}).get("parameters"):
            return True
    return False


JOB_PLACEHOLDERS = ("{{$.pipeline_job_name}}", "{{$.pipeline_job_uuid}}", "{{$.pipeline_job_resource_name}}")


def _job_placeholders(spec: dict) -> bool:
    """Whether a task input is a run placeholder constant (the selection's ``kfp_run_name``)."""
    return any(
        ((param.get("runtimeValue") or {}).get("constant")) in JOB_PLACEHOLDERS
        for _, task in _tasks(spec)
        for param in ((task.get("inputs") or {}).get("parameters") or {}).values()
    )


def _k8s_any(platform: dict, predicate: Callable[[dict], bool]) -> bool:
    return any(predicate(e) for e in _executors(platform))


@dataclass(frozen=True)
class BackendFeature:
    name: str
    since: str  # first KFP backend release that handles it
    source: str  # where that is recorded upstream
    used: Callable[[dict, dict], bool]  # (pipeline spec, platform spec) -> used by this YAML?


FEATURES: tuple[BackendFeature, ...] = (
    BackendFeature(
        "node selector",
        "2.0.0",
        "PR 9132 (driver/k8s.go nodeSelector)",
        lambda s, p: _k8s_any(p, lambda e: bool(e.get("nodeSelector"))),
    ),
    BackendFeature(
        "tolerations",
        "2.1.0",
        "PR 10471 (driver/k8s.go tolerations)",
        lambda s, p: _k8s_any(p, lambda e: bool(e.get("tolerations"))),
    ),
    BackendFeature(
        "field path as env (the run id from the pod label)",
        "2.1.0",
        "PR 10496 (driver/k8s.go fieldPathAsEnv)",
        lambda s, p: _k8s_any(p, lambda e: bool(e.get("fieldPathAsEnv"))),
    ),
    BackendFeature(
        "ParallelFor parallelism limit",
        "2.2.0",
        "PR 10678 (compiler/argocompiler iteratorPolicy)",
        lambda s, p: any("iteratorPolicy" in t for t in _loops(s)),
    ),
    BackendFeature(
        "string resource requests and accelerators (resourceCpuRequest, resourceType)",
        "2.4.0",
        "PR 11501 (driver/container.go)",
        lambda s, p: any(
            any(k.startswith("resource") for k in (c.get("resources") or {}))
            or "resourceType" in ((c.get("resources") or {}).get("accelerator") or {})
            for c in _containers(s)
        ),
    ),
    BackendFeature(
        "task retry policy",
        "2.5.0",
        "PR 11673 (compiler/argocompiler retryStrategy)",
        lambda s, p: any("retryPolicy" in t for _, t in _tasks(s)),
    ),
    BackendFeature(
        "Secret / ConfigMap named by a pipeline parameter",
        "2.5.0",
        "PR 11770 (driver/k8s.go secretNameParameter, configMapNameParameter)",
        lambda s, p: _k8s_any(
            p,
            lambda e: (
                any("secretNameParameter" in x for x in e.get("secretAsEnv", []))
                or any("configMapNameParameter" in x for x in e.get("configMapAsEnv", []))
            ),
        ),
    ),
    BackendFeature("dsl.Collected of parameters", "2.14.0", "PR 11725 (driver/resolve.go)", lambda s, p: _collected(s)),
    BackendFeature(
        "run placeholders as task inputs ({{$.pipeline_job_name}})",
        "2.14.0",
        "PR 11599 (driver/resolve.go: an input whose constant is exactly the placeholder)",
        lambda s, p: _job_placeholders(s),
    ),
    BackendFeature(
        "optional Secret / ConfigMap as env",
        "2.15.0",
        "PR 12216 (driver/k8s.go; older drivers drop `optional` and require the object)",
        lambda s, p: _k8s_any(
            p, lambda e: any(x.get("optional") for x in e.get("secretAsEnv", []) + e.get("configMapAsEnv", []))
        ),
    ),
    BackendFeature(
        "ParallelFor feeding dsl.Collected",
        "2.16.0",
        "PR 12808, issue 11964 (compiler/argocompiler/dag.go task names in loops)",
        lambda s, p: _collected(s),
    ),
)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``2.16.0`` (also ``v2.16.0``, ``2.16.0-rc.1``) -> (2, 16, 0); None when not a release number."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+.].*)?", (text or "").strip())
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


@dataclass(frozen=True)
class Healthz:
    """What a healthz answer says about the backend."""

    server: str  # "api server" or "ui server": who answered
    release: str  # the API server's release (``tag_name``), "unknown" for a development build
    api_ready: bool = True  # the UI server reached the API server for this answer
    frontend: str = ""  # the UI server's own release (``frontendTagName``), when it answered


def read_healthz(answer: dict) -> Healthz | None:
    """The backend's release from a healthz answer of either server; None for any other shape.

    - API server (``backend/src/apiserver/main.go``, the ``/apis/v2beta1/healthz`` handler):
      ``{"commit_sha", "tag_name", "multi_user", "pipeline_store"}``; ``tag_name`` is the
      release, ``unknown`` when the build set none.
    - UI server (``frontend/server/app.ts`` routes ``/apis/v2beta1/healthz`` to
      ``frontend/server/handlers/healthz.ts``): it asks the API server's healthz itself (1 s
      timeout) and answers ``{"buildDate", "frontendCommitHash", "frontendTagName",
      "apiServerReady", "apiServerCommitHash", "apiServerTagName", "apiServerMultiUser",
      "multi_user", "pipelineStore"}``, with no ``tag_name``. ``apiServerTagName`` is the API
      server's ``tag_name``; when ``apiServerReady`` is false the API server did not answer and
      the other ``apiServer*`` fields are absent or left over from an earlier answer (the handler
      keeps one object across requests), so they say nothing. Same shape from 2.2 to 2.17.
    """
    if "tag_name" in answer:
        return Healthz("api server", str(answer.get("tag_name") or "unknown"))
    if "apiServerReady" in answer or "frontendTagName" in answer:
        ready = answer.get("apiServerReady") is True
        return Healthz(
            "ui server",
            str(answer.get("apiServerTagName") or "unknown") if ready else "unknown",
            api_ready=ready,
            frontend=str(answer.get("frontendTagName") or ""),
        )
    return None


def features_used(spec: dict, platform: dict) -> list[BackendFeature]:
    return [f for f in FEATURES if f.used(spec, platform)]


def too_new_for(version: str, spec: dict, platform: dict) -> list[BackendFeature]:
    """The features of this compiled pipeline that backend ``version`` does not handle."""
    have = parse_version(version)
    if have is None:
        raise ValueError(f"not a KFP release number: {version!r}")
    return [f for f in features_used(spec, platform) if parse_version(f.since) > have]


def load_compiled(package_path: str) -> tuple[dict, dict]:
    """(pipeline spec, platform spec) of a compiled pipeline YAML (platform empty when absent)."""
    import yaml

    with open(package_path) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    return docs[0], (docs[1] if len(docs) > 1 else {})
