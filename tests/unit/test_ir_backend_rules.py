"""The compiled pipeline against the rules of the KFP backend that runs it (tests/support/ir_rules.py),
for every preset and with cluster placement; and proof that each rule fails on the defects
it exists to catch."""

from pathlib import Path
from typing import List

import pytest
from kfp import compiler, dsl

from pipelines import backend_compat
from pipelines.presets import PRESETS
from pipelines.training_pipeline import CompileSettings, build_pipeline
from tests.support import ir_rules

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = dict(
    parallelism=2,
    node_selector={"pool": "gpu"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
)
VARIANTS = {
    "defaults": {},
    "require-approval": {"require_approval": True},
    **{name: {"parameter_defaults": dict(p)} for name, p in PRESETS.items()},
}


def _compile(tmp_path: Path, settings: CompileSettings) -> tuple[dict, dict]:
    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(
        build_pipeline(settings), str(path), pipeline_parameters=settings.parameter_defaults or None
    )
    return backend_compat.load_compiled(str(path))


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def compiled(request, tmp_path_factory) -> tuple[dict, dict]:
    return _compile(tmp_path_factory.mktemp(request.param), CompileSettings(**CLUSTER, **VARIANTS[request.param]))


def test_every_parameter_channel_carries_its_consumers_type(compiled):
    spec, _ = compiled
    assert ir_rules.parameter_type_violations(spec) == []


def test_training_gets_its_model_config_as_a_struct(compiled):
    spec, _ = compiled
    assert ("train", "STRUCT", "STRUCT") in ir_rules.loop_item_consumers(spec)


def test_collected_results_are_a_list_from_the_loop(compiled):
    spec, _ = compiled
    assert ir_rules.collected_output_violations(spec) == []
    (select,) = [c for name, c in spec["components"].items() if name.startswith("comp-select-and-")]
    results = select["inputDefinitions"]["parameters"]["results"]
    assert results["parameterType"] == "LIST"


def test_secret_and_config_map_references_resolve(compiled):
    spec, platform = compiled
    assert ir_rules.kubernetes_reference_violations(spec, platform) == []


def test_cacheable_tasks_take_no_per_run_value(compiled):
    spec, platform = compiled
    assert ir_rules.per_run_cache_key_violations(spec) == []
    # The run id still reaches every task, from the pod's label, outside the cache key.
    for label, cfg in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
        if label in ("exec-train", "exec-select-and-register", "exec-select-and-propose"):
            assert {"name": "KFP_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"} in cfg["fieldPathAsEnv"]


# What each never-cached step reads besides its inputs: the raw data's listing (fingerprint), the
# model registry (select-and-register/propose: the new version, @champion), the cluster (deploy, smoke test).
STATEFUL = {"fingerprint-data", "select-and-register", "select-and-propose", "deploy-model", "smoke-test"}


def test_steps_that_read_outside_state_are_never_cached(compiled):
    spec, _ = compiled
    assert ir_rules.stateful_cache_violations(spec, STATEFUL) == []


def test_cacheable_tasks_name_no_other_tasks_image(compiled):
    spec, _ = compiled
    assert ir_rules.foreign_image_violations(spec) == []


def test_no_task_relies_on_a_retry_inside_the_loop(compiled):
    spec, _ = compiled
    assert ir_rules.retry_in_loop_violations(spec) == []


def test_every_feature_is_in_the_stated_minimum_backend(compiled):
    spec, platform = compiled
    used = backend_compat.features_used(spec, platform)
    minimum = backend_compat.parse_version(backend_compat.MIN_BACKEND_VERSION)
    assert [f.name for f in used if backend_compat.parse_version(f.since) > minimum] == []
    # ... and the minimum is not overstated: the newest feature used needs exactly it.
    assert max(backend_compat.parse_version(f.since) for f in used) == minimum


def test_readme_states_the_minimum_backend():
    readme = (ROOT / "docs" / "cluster.md").read_text()
    assert f"Kubeflow Pipelines {backend_compat.MIN_BACKEND_VERSION} or later" in readme
    assert "2.1 or later" not in readme


def test_backend_version_check_names_the_feature(compiled):
    spec, platform = compiled
    assert [f.name for f in backend_compat.too_new_for("2.15.2", spec, platform)] == [
        "ParallelFor feeding dsl.Collected"
    ]
    assert {f.name for f in backend_compat.too_new_for("2.13.0", spec, platform)} >= {
        "dsl.Collected of parameters",
        "optional Secret / ConfigMap as env",
        "ParallelFor feeding dsl.Collected",
    }
    assert backend_compat.too_new_for("2.16.0", spec, platform) == []
    assert backend_compat.parse_version("v2.16.1-rc.0") == (2, 16, 1)
    assert backend_compat.parse_version("unknown") is None


# --- each rule fails on the defect it is for (the shape of the pipeline this suite replaced) ------


@dsl.component(base_image="python:3.11")
def _consume_struct(model_config: dict) -> str:
    return str(model_config)


@dsl.component(base_image="python:3.11")
def _tag_run(pipeline_run: str) -> str:
    return pipeline_run


@dsl.component(base_image="python:3.11")
def _gather(results: List[str]) -> str:
    return ",".join(results)


@dsl.component(base_image="python:3.12")
def _record_images(images: str) -> str:
    return images


def test_the_rules_catch_an_untyped_loop_a_run_name_input_a_retry_in_the_loop_and_cache_defects(tmp_path):
    from kfp import kubernetes

    @dsl.pipeline(name="old-shape")
    def old_shape(models: list = [{"family": "basic"}], secret: str = ""):  # noqa: B006
        with dsl.ParallelFor(models) as item:
            t = _consume_struct(model_config=item)
            t.set_retry(num_retries=1)
            kubernetes.use_secret_as_env(t, secret_name=secret, secret_key_to_env={"k": "bad-env-name"})
        _gather(results=dsl.Collected(t.output)).set_display_name("the registry step, left cacheable")
        _tag_run(pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
        _record_images(images="runtime=python:3.11,train=python:3.12")  # what train got before issue 22

    path = tmp_path / "old.yaml"
    compiler.Compiler().compile(old_shape, str(path))
    spec, platform = backend_compat.load_compiled(str(path))
    assert any("model_config is STRUCT but gets a string" in p for p in ir_rules.parameter_type_violations(spec))
    assert ir_rules.retry_in_loop_violations(spec)
    problems = ir_rules.kubernetes_reference_violations(spec, platform)
    assert any("bad-env-name" in p for p in problems) and any("defaults to ''" in p for p in problems)
    assert ir_rules.per_run_cache_key_violations(spec) == [
        "root/tag-run: cacheable, but input pipeline_run is a per-run value"
    ]
    assert ir_rules.stateful_cache_violations(spec, {"gather"}) == [
        "root/gather: reads state outside its inputs but is cacheable"
    ]
    assert ir_rules.foreign_image_violations(spec) == [
        "root/record-images: cacheable, but input images names another task's image python:3.11"
    ]
