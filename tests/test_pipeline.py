"""The whole pipeline under kfp.local against a real MLflow server: champion, challenger, takeover."""

import json

import mlflow
import pytest
import yaml

from pipelines.training_pipeline import CompileSettings, build_pipeline

STRONG = {"family": "basic", "name": "strong", "width": 8, "epochs": 12, "augment": False, "learning_rate": 0.005,
          "early_stopping_patience": 0, "deterministic": True}
WEAK = {"family": "basic", "name": "weak", "width": 4, "epochs": 1, "augment": False, "learning_rate": 1e-6,
        "deterministic": True}


def run_pipeline(demo_raw, tracking_uri, models, name):
    pipeline = build_pipeline(CompileSettings(parallelism=1))
    task = pipeline(
        data_uri=str(demo_raw), models=models, image_size=32, epochs=1, batch_size=16, seed=1,
        val_fraction=0.25, mlflow_tracking_uri=tracking_uri, experiment_name="test-pipeline",
        registered_model_name=name,
    )
    return json.loads(task.output)


@pytest.mark.slow
def test_champion_challenger_and_takeover(kfp_local, demo_raw, mlflow_server, monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "run-under-test")
    name = "pipeline-test-model"
    client = mlflow.MlflowClient(mlflow_server)

    first = run_pipeline(demo_raw, mlflow_server, [STRONG, WEAK], name)
    assert first["winner"] == "strong"  # chosen on validation accuracy
    reg = first["registered_model"]
    assert (reg["version"], reg["alias"], reg["champion_changed"]) == ("1", "champion", True)
    v1 = client.get_model_version_by_alias(name, "champion")
    assert v1.version == "1" and v1.tags["model_name"] == "strong" and v1.tags["family"] == "basic"
    assert v1.tags["data_fingerprint"] == first["data_fingerprint"] and v1.tags["pipeline_run"] == "run-under-test"
    strong_val = next(m for m in first["models"] if m["name"] == "strong")["val"]["accuracy"]
    assert float(v1.tags["val_accuracy"]) == pytest.approx(strong_val, abs=1e-4) and strong_val >= 0.8

    second = run_pipeline(demo_raw, mlflow_server, [WEAK], name)
    reg = second["registered_model"]
    assert (reg["version"], reg["alias"], reg["champion_changed"]) == ("2", "challenger", False)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    assert second["previous_champion"]["val"]["accuracy"] > second["models"][0]["val"]["accuracy"]

    third = run_pipeline(demo_raw, mlflow_server, [STRONG], name)
    reg = third["registered_model"]
    assert (reg["version"], reg["alias"], reg["champion_changed"]) == ("3", "champion", True)
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    # Stages are never used: aliases only.
    assert all(v.current_stage in ("None", "", None) for v in client.search_model_versions(f"name='{name}'"))


def test_compiled_pipeline_structure(tmp_path):
    from kfp import compiler
    from kfp.components import load_component_from_file

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(CompileSettings(parallelism=2, gpus_per_model=1)), str(path))
    spec = yaml.safe_load_all(path.read_text()).__next__()
    root = spec["root"]
    params = root["inputDefinitions"]["parameters"]
    assert {"data_uri", "models", "image_size", "epochs", "batch_size", "learning_rate", "seed",
            "mlflow_tracking_uri", "registered_model_name"} <= set(params)
    assert params["models"]["defaultValue"][0]["family"] == "efficientnet-lite0"
    assert params["models"].get("description")
    tasks = root["dag"]["tasks"]
    loop_name, loop = next((n, t) for n, t in tasks.items() if "parameterIterator" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    select = next(t for n, t in tasks.items() if n.startswith("select-and-register"))
    collected = select["inputs"]["parameters"]["results"]["taskOutputParameter"]
    assert collected["producerTask"] == loop_name
    assert select["taskInfo"]["name"] == "Select and register champion"
    train_exec = next(e for n, e in spec["deploymentSpec"]["executors"].items() if n.startswith("exec-train"))
    resources = train_exec["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    assert load_component_from_file(str(path)).name == "skin-cancer-training"


def test_imagenet_gpu_preset_compiles_into_the_parameter_defaults(tmp_path):
    from kfp import compiler

    from pipelines.presets import IMAGENET_GPU, LOCAL_CPU

    path = tmp_path / "imagenet.yaml"
    settings = CompileSettings(parameter_defaults=dict(IMAGENET_GPU))
    compiler.Compiler().compile(build_pipeline(settings), str(path), pipeline_parameters=settings.parameter_defaults)
    params = next(yaml.safe_load_all(path.read_text()))["root"]["inputDefinitions"]["parameters"]
    assert params["image_size"]["defaultValue"] == 224
    families = {m["family"]: m for m in params["models"]["defaultValue"]}
    assert families["efficientnet"]["weights"] == "imagenet" and families["resnet50"]["weights"] == "imagenet"
    assert families["efficientnet-lite0"]["weights"] == "imagenet"
    # The uncompiled pipeline's own defaults are the CPU preset.
    plain = tmp_path / "plain.yaml"
    compiler.Compiler().compile(build_pipeline(), str(plain))
    plain_params = next(yaml.safe_load_all(plain.read_text()))["root"]["inputDefinitions"]["parameters"]
    assert plain_params["image_size"]["defaultValue"] == LOCAL_CPU["image_size"]
    assert plain_params["models"]["defaultValue"] == LOCAL_CPU["models"]
