"""What the KFP backend checks in a compiled pipeline, as plain functions over the IR YAML.

``kfp.local`` applies none of these; a real cluster's driver and compiler do. Each function
returns a list of violations (empty = the backend accepts it) and cites the file of
kubeflow/pipelines (``backend/src/v2/...``) whose behaviour it encodes.
"""

from __future__ import annotations

import re

# driver/resolve.go, handleParamTypeValidationAndConversion: a value's protobuf kind must
# match the declared type. STRING is the exception: any value is converted to its JSON text
# (so a struct reaching a STRING input continues as a *string*). Integers and doubles are
# both protobuf numbers.
_KIND = {
    "STRING": "string",
    "NUMBER_INTEGER": "number",
    "NUMBER_DOUBLE": "number",
    "BOOLEAN": "bool",
    "LIST": "list",
    "STRUCT": "struct",
    "TASK_FINAL_STATUS": "struct",
}

# Placeholders whose value differs from run to run (sdk/python/kfp/dsl/pipeline_channel.py
# and placeholders.py): in a task input they change the cache key on every run.
PER_RUN_PLACEHOLDER = re.compile(
    r"\{\{\$\.pipeline_(job_name|job_resource_name|job_uuid|job_create_time_utc|"
    r"job_schedule_time_utc|task_name|task_uuid)\}\}"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # Kubernetes: a C identifier
_KEY_NAME = re.compile(r"^[-._a-zA-Z0-9]+$")  # Kubernetes: Secret/ConfigMap data keys
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _kind_of_value(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "struct"
    return "null"


def _accepts(declared: str, kind: str) -> bool:
    return declared == "STRING" or _KIND.get(declared) == kind


def dags(spec: dict) -> dict[str, dict]:
    """Every DAG component by name, the root included."""
    out = {"root": spec["root"]}
    out.update({n: c for n, c in spec["components"].items() if "dag" in c})
    return out


def _source_kind(spec: dict, owner: dict, source: dict) -> tuple[str, str]:
    """(kind the value arrives as, where from) for one input parameter spec of a task in ``owner``."""
    if "componentInputParameter" in source:
        name = source["componentInputParameter"]
        declared = owner.get("inputDefinitions", {}).get("parameters", {}).get(name)
        if declared is None:
            return "missing", f"input {name!r} not declared by the enclosing DAG"
        return _KIND[declared["parameterType"]], f"DAG input {name} ({declared['parameterType']})"
    if "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        producer = owner["dag"]["tasks"].get(ref["producerTask"])
        if producer is None:
            return "missing", f"producer task {ref['producerTask']!r} is not in the same DAG"
        comp = spec["components"][producer["componentRef"]["name"]]
        declared = comp.get("outputDefinitions", {}).get("parameters", {}).get(ref["outputParameterKey"])
        if declared is None:
            return "missing", f"{ref['producerTask']} has no output {ref['outputParameterKey']!r}"
        return _KIND[declared["parameterType"]], f"output {ref['producerTask']}.{ref['outputParameterKey']}"
    if "runtimeValue" in source:
        value = source["runtimeValue"]["constant"]
        return _kind_of_value(value), f"constant {value!r}"
    return "unknown", f"unsupported source {sorted(source)}"


def parameter_type_violations(spec: dict) -> list[str]:
    """Every parameter channel carries the kind its consumer declares (driver/resolve.go).

    Covers task inputs, loop items (the iteration DAG's item input receives one element of the
    items list, then is checked against its own declared type, and STRING turns it into text)
    and DAG outputs that dsl.Collected builds (a LIST)."""
    problems = []
    for owner_name, owner in dags(spec).items():
        for task_name, task in owner["dag"]["tasks"].items():
            comp_name = task["componentRef"]["name"]
            comp = spec["components"][comp_name]
            declared = comp.get("inputDefinitions", {}).get("parameters", {})
            it = task.get("parameterIterator")
            for name, source in (task.get("inputs") or {}).get("parameters", {}).items():
                if name not in declared:
                    problems.append(f"{owner_name}/{task_name}: input {name!r} is not declared by {comp_name}")
                    continue
                kind, where = _source_kind(spec, owner, source)
                if not _accepts(declared[name]["parameterType"], kind):
                    problems.append(
                        f"{owner_name}/{task_name}: input {name} is {declared[name]['parameterType']} "
                        f"but gets a {kind} from {where}"
                    )
            if it:
                items_name = it["items"].get("inputParameter")
                item_name = it["itemInput"]
                item_type = declared.get(item_name, {}).get("parameterType")
                items_src = (task.get("inputs") or {}).get("parameters", {}).get(items_name)
                if item_type is None:
                    problems.append(f"{owner_name}/{task_name}: loop item {item_name!r} not declared by {comp_name}")
                for element in _default_items(spec, owner, items_src):
                    kind = _kind_of_value(element)
                    if not _accepts(item_type or "", kind):
                        problems.append(
                            f"{owner_name}/{task_name}: loop item {item_name} is {item_type} "
                            f"but an item is a {kind}: {element!r}"
                        )
    return problems


def _default_items(spec: dict, owner: dict, source: dict | None) -> list:
    """The default list a root-level loop iterates over (a pipeline input's default value)."""
    if not source or "componentInputParameter" not in source or owner is not spec["root"]:
        return []
    root_inputs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    value = root_inputs.get(source["componentInputParameter"], {}).get("defaultValue")
    return value if isinstance(value, list) else []


def collected_output_violations(spec: dict) -> list[str]:
    """A loop DAG's output parameter (what dsl.Collected compiles to) is a LIST gathered from a
    task of that DAG (driver/resolve.go resolves it by collecting every iteration's value)."""
    problems = []
    for owner in dags(spec).values():
        for task_name, task in owner["dag"]["tasks"].items():
            if "parameterIterator" not in task:
                continue
            comp = spec["components"][task["componentRef"]["name"]]
            declared = comp.get("outputDefinitions", {}).get("parameters", {})
            for name, out in (comp["dag"].get("outputs") or {}).get("parameters", {}).items():
                sel = out.get("valueFromParameter", {})
                if sel.get("producerSubtask") not in comp["dag"]["tasks"]:
                    problems.append(
                        f"{task_name}: output {name} comes from {sel.get('producerSubtask')!r}, not a task of the loop"
                    )
                if declared.get(name, {}).get("parameterType") != "LIST":
                    problems.append(
                        f"{task_name}: collected output {name} is "
                        f"{declared.get(name, {}).get('parameterType')}, not LIST"
                    )
    return problems


def loop_item_consumers(spec: dict) -> list[tuple[str, str, str]]:
    """(consumer task, its declared type, the loop item's declared type) for each use of a loop item:
    the pairs the driver compares when a training task starts."""
    out = []
    for owner_name, owner in dags(spec).items():
        items = owner.get("inputDefinitions", {}).get("parameters", {})
        for task_name, task in owner["dag"]["tasks"].items():
            comp = spec["components"][task["componentRef"]["name"]]
            for name, source in (task.get("inputs") or {}).get("parameters", {}).items():
                src = source.get("componentInputParameter", "")
                if src.endswith("-loop-item"):
                    out.append(
                        (
                            task_name,
                            comp["inputDefinitions"]["parameters"][name]["parameterType"],
                            items[src]["parameterType"],
                        )
                    )
    return out


def _parent_dag_of_executor(spec: dict, executor_label: str) -> list[tuple[str, dict]]:
    out = []
    for owner_name, owner in dags(spec).items():
        for task in owner["dag"]["tasks"].values():
            if spec["components"][task["componentRef"]["name"]].get("executorLabel") == executor_label:
                out.append((owner_name, owner))
    return out


def kubernetes_reference_violations(spec: dict, platform: dict) -> list[str]:
    """Secret and ConfigMap references the driver can resolve (driver/k8s.go): a name or a name
    parameter; a name parameter is a STRING input of the task's enclosing DAG that resolves to a
    non-empty string (resolve.go resolveInputParameterStr); env names and keys are valid."""
    problems = []
    executors = (
        ((platform.get("platforms") or {}).get("kubernetes") or {}).get("deploymentSpec", {}).get("executors", {})
    )
    root_inputs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    for label, cfg in executors.items():
        refs = [("Secret", r, "secretName", "secretNameParameter", "secretKey") for r in cfg.get("secretAsEnv", [])]
        refs += [
            ("ConfigMap", r, "configMapName", "configMapNameParameter", "configMapKey")
            for r in cfg.get("configMapAsEnv", [])
        ]
        for kind, ref, name_key, param_key, data_key in refs:
            if not ref.get(name_key) and not ref.get(param_key):
                problems.append(f"{label}: {kind} as env with neither {name_key} nor {param_key}")
            if ref.get(name_key) and not _DNS_SUBDOMAIN.match(ref[name_key]):
                problems.append(f"{label}: {kind} name {ref[name_key]!r} is not a DNS subdomain")
            for pair in ref.get("keyToEnv", []):
                if not _ENV_NAME.match(pair.get("envVar", "")):
                    problems.append(f"{label}: env var name {pair.get('envVar')!r} is not a C identifier")
                if not _KEY_NAME.match(pair.get(data_key, "")):
                    problems.append(f"{label}: {kind} key {pair.get(data_key)!r} is not a valid key")
            source = ref.get(param_key)
            if not source:
                continue
            param = source.get("componentInputParameter")
            if not param:
                problems.append(f"{label}: {param_key} must name an input parameter, got {source}")
                continue
            for owner_name, owner in _parent_dag_of_executor(spec, label):
                declared = owner.get("inputDefinitions", {}).get("parameters", {}).get(param)
                if declared is None or declared["parameterType"] != "STRING":
                    problems.append(f"{label} in {owner_name}: {param_key} {param!r} is not a STRING input there")
            root_name = param.removeprefix("pipelinechannel--")
            default = root_inputs.get(root_name, {}).get("defaultValue")
            if root_name in root_inputs and not (isinstance(default, str) and _DNS_SUBDOMAIN.match(default)):
                problems.append(f"{label}: pipeline input {root_name} defaults to {default!r}, not an object name")
    return problems


def per_run_cache_key_violations(spec: dict) -> list[str]:
    """A cacheable task takes no per-run value as an input (cacheutils/cache.go GenerateCacheKey
    hashes every input parameter value; a run name or uuid makes every run a cache miss). Values
    reaching a task through a DAG's inputs are followed back to their source."""
    problems = []
    tainted: set[tuple[str, str]] = set()  # (DAG component, input name) that carry a per-run value
    changed = True
    while changed:  # propagate per-run values into nested DAGs' inputs
        changed = False
        for owner_name, owner in dags(spec).items():
            for task in owner["dag"]["tasks"].values():
                child = task["componentRef"]["name"]
                if "dag" not in spec["components"][child]:
                    continue
                for name, source in (task.get("inputs") or {}).get("parameters", {}).items():
                    if _per_run(source, owner_name, tainted) and (child, name) not in tainted:
                        tainted.add((child, name))
                        changed = True
    for owner_name, owner in dags(spec).items():
        for task_name, task in owner["dag"]["tasks"].items():
            comp = spec["components"][task["componentRef"]["name"]]
            if "executorLabel" not in comp or not task.get("cachingOptions", {}).get("enableCache", False):
                continue
            for name, source in (task.get("inputs") or {}).get("parameters", {}).items():
                if _per_run(source, owner_name, tainted):
                    problems.append(f"{owner_name}/{task_name}: cacheable, but input {name} is a per-run value")
    return problems


def _per_run(source: dict, owner_name: str, tainted: set) -> bool:
    constant = (source.get("runtimeValue") or {}).get("constant")
    if isinstance(constant, str) and PER_RUN_PLACEHOLDER.search(constant):
        return True
    return (owner_name, source.get("componentInputParameter")) in tainted


def retry_in_loop_violations(spec: dict) -> list[str]:
    """No task inside a ParallelFor relies on a retry policy: the backend ignores it there
    (kubeflow/pipelines issues 12389 and 13897; compiler/argocompiler puts the retryStrategy on
    a template Argo does not retry per iteration). The pipeline must not promise what won't run."""
    loop_dags = {
        t["componentRef"]["name"]
        for d in dags(spec).values()
        for t in d["dag"]["tasks"].values()
        if "parameterIterator" in t or "artifactIterator" in t
    }
    return [
        f"{d}/{name}: retryPolicy inside a ParallelFor is ignored by the backend"
        for d in loop_dags
        for name, t in spec["components"][d]["dag"]["tasks"].items()
        if "retryPolicy" in t
    ]


def _cacheable_container_tasks(spec: dict):
    """(DAG name, task name, task, executor's image) for every container task with caching on."""
    executors = spec["deploymentSpec"]["executors"]
    for owner_name, owner in dags(spec).items():
        for task_name, task in owner["dag"]["tasks"].items():
            comp = spec["components"][task["componentRef"]["name"]]
            if "executorLabel" in comp and task.get("cachingOptions", {}).get("enableCache", False):
                yield (
                    owner_name,
                    task_name,
                    task,
                    executors[comp["executorLabel"]].get("container", {}).get("image", ""),
                )


def foreign_image_violations(spec: dict) -> list[str]:
    """A cacheable task takes no constant input that names another task's image.

    The driver's cache key (cacheutils/cache.go GenerateCacheKey, called from driver/cache.go) is
    the input parameter values, the input artifacts, the outputs' types, the command and the
    task's own image. Its own image in an input changes nothing; another task's image makes a
    rebuild of that image a cache miss here too (e.g. every training redone for a new runtime image)."""
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e}
    problems = []
    for owner_name, task_name, task, own in _cacheable_container_tasks(spec):
        for name, source in (task.get("inputs") or {}).get("parameters", {}).items():
            constant = json_text((source.get("runtimeValue") or {}).get("constant"))
            for image in sorted(images - {own}):
                if image in constant:
                    problems.append(
                        f"{owner_name}/{task_name}: cacheable, but input {name} names another task's image {image}"
                    )
    return problems


def json_text(value) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


def stateful_cache_violations(spec: dict, stateful: set[str]) -> list[str]:
    """Tasks whose result depends on state outside their inputs (the data store's listing, the
    model registry, the cluster) have caching off: on a fingerprint match the driver reuses the
    earlier execution's outputs without running the task (driver/cache.go, cacheutils/cache.go),
    and nothing of that outside state is in the fingerprint."""
    return [
        f"{owner}/{name}: reads state outside its inputs but is cacheable"
        for owner, name, _, _ in _cacheable_container_tasks(spec)
        if name in stateful
    ]
