"""What the steps hand each other (step_results.py), and model configs checked where they enter:
an unknown key or a bad value stops the command line before anything runs, naming the key."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from components.core.modeling.train_config import TrainConfig, model_configs
from components.core.step_results import ModelResult, SelectionSummary, TrainSummary

ROOT = Path(__file__).resolve().parents[2]
METRICS = {
    "accuracy": 0.75,
    "auc": math.nan,
    "sensitivity": 0.5,
    "specificity": 1.0,
    "confusion_matrix": [[2, 0], [1, 1]],
}


def summary(**changes) -> TrainSummary:
    values = dict(
        name="lite",
        family="efficientnet-lite0",
        run_id="r1",
        model_uri="models:/m1",
        threshold=0.41,
        val=METRICS,
        test=METRICS,
        params=12,
        seconds=3.5,
        config=TrainConfig(family="efficientnet-lite0", min_sensitivity=0.9, head_epochs=1),
        temperature=1.3,
        lineage={"data_uri": "s3://b/raw"},
        figures=["figures/val_roc.png"],
    )
    return TrainSummary(**{**values, **changes})


def test_the_train_summary_crosses_kfp_as_json_and_comes_back_equal():
    sent = summary()
    text = sent.to_json()
    assert isinstance(text, str) and json.loads(text)["config"]["min_sensitivity"] == 0.9
    back = TrainSummary.from_json(text)
    assert back.config == sent.config and back.threshold == 0.41 and back.figures == sent.figures
    assert math.isnan(back.val["auc"])  # NaN survives the trip
    assert TrainSummary.from_json(json.loads(text)).run_id == "r1"  # kfp.local may hand the parsed dict
    assert "decision" not in json.loads(text)  # absent unless there is a policy
    assert json.loads(summary(decision={"kind": "threshold"}).to_json())["decision"] == {"kind": "threshold"}


def test_a_train_summary_with_an_unknown_field_or_config_key_is_refused():
    data = json.loads(summary().to_json())
    with pytest.raises(ValueError, match=r"TrainSummary: unknown field\(s\) \['thresold'\]"):
        TrainSummary.from_json({**data, "thresold": 0.5})
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['dropuot'\]"):
        TrainSummary.from_json({**data, "config": {**data["config"], "dropuot": 0.1}})


def test_the_selection_summary_round_trip():
    sent = SelectionSummary(
        models=[ModelResult.of(summary())],
        winner="lite",
        registered_model={
            "name": "m",
            "version": "2",
            "alias": "champion",
            "model_uri": "models:/m/2",
            "champion_version": "2",
            "champion_changed": True,
        },
        previous_champion=None,
        data_fingerprint="fp",
    )
    back = SelectionSummary.from_json(json.dumps(sent.to_dict()))
    assert back.registered_model.version == "2" and back.models[0].params == 12 and back.winner == "lite"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"family": "basic", "learnig_rate": 0.1}, r"unknown hyperparameter\(s\) \['learnig_rate'\]"),
        ({"family": "basic", "epochs": "ten"}, r"hyperparameter epochs must be int, got 'ten'"),
        ({"family": "basic", "epochs": 2.5}, r"hyperparameter epochs must be an integer, got 2.5"),
        ({"family": "basic", "augment": "yes"}, r"hyperparameter augment must be bool"),
        ({"family": "basic", "min_sensitivity": 1.2}, r"hyperparameter min_sensitivity must be between 0 and 1"),
        (
            {"family": "basic", "augmentation": "heavy"},
            r"hyperparameter augmentation must be one of \['full', 'light'\]",
        ),
    ],
)
def test_model_configs_name_the_model_and_the_key(config, message):
    with pytest.raises(ValueError, match=r"model config 2 .*" + message):
        model_configs([{"family": "basic"}, config])


def test_kfp_struct_numbers_are_accepted_as_ints():
    ((name, cfg),) = model_configs([{"family": "basic", "name": "b", "epochs": 3.0}], {"learning_rate": 1})
    assert (name, cfg.epochs, cfg.learning_rate) == ("b", 3, 1.0)


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    from pipelines import cli

    try:
        code = cli.main(args)
    except SystemExit as stop:  # argparse
        code = stop.code
    return code, capsys.readouterr().err


def test_run_refuses_a_bad_model_config_before_anything_runs(tmp_path, capsys):
    code, err = run_cli(
        ["run", "--workdir", str(tmp_path), "--models", '[{"family": "basic", "learnig_rate": 0.1}]'], capsys
    )
    assert code == 2 and "argument --models: model config 1" in err and "'learnig_rate'" in err
    assert not any(tmp_path.iterdir()), "the run started"


def test_train_refuses_a_bad_config_before_training(preprocessed, tmp_path, capsys, monkeypatch):
    from components.core.steps import train as train_step

    monkeypatch.setattr(train_step, "run_train", lambda **kw: pytest.fail("training started"))
    code, err = run_cli(
        [
            "train",
            "--data",
            str(preprocessed),
            "--model",
            "basic",
            "--workdir",
            str(tmp_path),
            "--config",
            '{"dropout": "high"}',
        ],
        capsys,
    )
    assert code == 2 and "hyperparameter dropout must be float, got 'high'" in err


def test_submit_and_compile_refuse_a_bad_model_config(tmp_path):
    from pipelines import submit
    from pipelines.training_pipeline import CompileSettings

    with pytest.raises(
        submit.SubmitError, match=r"--param models: model config 1 .*unknown hyperparameter\(s\) \['wdth'\]"
    ):
        submit.parse_params(
            ['models=[{"family": "basic", "wdth": 8}]'], {"models": {"type": "LIST", "required": False}}
        )
    out = tmp_path / "pipeline.yaml"
    bad = CompileSettings(
        image="r/i:1", train_image="r/t:1", parameter_defaults={"models": [{"family": "basic", "foldz": 3}]}
    )
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['foldz'\]"):
        submit.compile_package(bad, str(out))
    assert not out.exists()


def test_every_preset_is_checked_when_loaded():
    from pipelines import presets

    for preset in presets.PRESETS.values():
        presets.check(preset)  # what loading the module did
    broken = {**presets.LOCAL_CPU, "models": [{**presets.LOCAL_CPU["models"][0], "fine_tune_form": "block5"}]}
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['fine_tune_form'\]"):
        presets.check(broken)


def core_imports() -> dict[str, set[str]]:
    """components.core module -> the components.core modules it imports (anywhere in its body)."""
    modules = {}
    for path in (ROOT / "components" / "core").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from pkg import mod` imports the module mod; `from mod import name`, the module mod.
                found |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                }
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = (found & set(modules)) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each once, as the path from a module back to itself."""
    found = []

    def walk(node, path):
        for nxt in sorted(graph[node]):
            if nxt == path[0]:
                found.append(path + [nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle from its smallest module only
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_no_import_cycle_between_core_modules():
    graph = core_imports()
    assert "components.core.redaction" in graph["components.core.registry.lineage"]  # the graph is read, not empty
    assert cycles(graph) == []
    # ... and the check finds one where there is one (lineage and tracking imported each other).
    assert cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b", "a"]]
