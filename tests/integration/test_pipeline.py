"""The whole pipeline under kfp.local against a real MLflow server: champion, challenger, takeover."""

import json

import yaml

from pipelines.training_pipeline import CompileSettings, build_pipeline

STRONG = {
    "family": "basic",
    "name": "strong",
    "width": 8,
    "epochs": 12,
    "augment": False,
    "learning_rate": 0.005,
    "early_stopping_patience": 0,
    "deterministic": True,
}
WEAK = {
    "family": "basic",
    "name": "weak",
    "width": 4,
    "epochs": 1,
    "augment": False,
    "learning_rate": 1e-6,
    "deterministic": True,
}


def run_pipeline(demo_raw, tracking_uri, models, name):
    pipeline = build_pipeline(CompileSettings(parallelism=1))
    task = pipeline(
        data_uri=str(demo_raw),
        models=models,
        image_size=32,
        epochs=1,
        batch_size=16,
        seed=1,
        val_fraction=0.25,
        mlflow_tracking_uri=tracking_uri,
        experiment_name="test-pipeline",
        registered_model_name=name,
    )
    return json.loads(task.output)


def test_compiled_pipeline_structure(tmp_path):
    from kfp import compiler
    from kfp.components import load_component_from_file

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(CompileSettings(parallelism=2, gpus_per_model=1)), str(path))
    spec = yaml.safe_load_all(path.read_text()).__next__()
    root = spec["root"]
    params = root["inputDefinitions"]["parameters"]
    assert {
        "data_uri",
        "models",
        "image_size",
        "epochs",
        "batch_size",
        "learning_rate",
        "seed",
        "mlflow_tracking_uri",
        "registered_model_name",
    } <= set(params)
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
