"""Components run through KFP's own local runner (kfp.local.SubprocessRunner), not only as functions."""

from kfp import dsl

from components.core.data.dataset import SplitArrays, hash_split, scan_raw
from components.preprocess import preprocess
from components.train import train


def test_preprocess_component_under_kfp_local(kfp_local, demo_raw, mlflow_server):
    pre = preprocess(
        data_uri=str(demo_raw),
        image_size=32,
        val_fraction=0.25,
        seed=1,
        max_bad_fraction=0.0,
        mlflow_tracking_uri=mlflow_server,
        experiment_name="test-components",
        data_fingerprint="",
    )
    train_art = pre.outputs["train_data"]
    # The split is decided by the hash of each key (dataset/split.py): the same counts here.
    train, _ = hash_split([i for i in scan_raw(str(demo_raw)).images if i.split == "train"], 0.25, seed=1)
    expected = {c: sum(i.label == n for i in train) for n, c in enumerate(("benign", "malignant"))}
    assert train_art.metadata["count"] == len(train) == sum(expected.values())
    assert train_art.metadata["image_size"] == 32 and train_art.metadata["class_counts"] == expected
    assert 24 <= len(train) <= 40  # 48 train images, about a quarter to validation
    assert len(pre.outputs["fingerprint"]) == 16
    assert SplitArrays(pre.outputs["test_data"].path).labels.tolist().count(1) == 8


@dsl.pipeline
def preprocess_then_train(data_uri: str, tracking_uri: str) -> str:
    """kfp.local passes artifacts between tasks only inside a pipeline."""
    pre = preprocess(
        data_uri=data_uri,
        image_size=32,
        val_fraction=0.25,
        seed=1,
        max_bad_fraction=0.0,
        mlflow_tracking_uri=tracking_uri,
        experiment_name="test-components",
        data_fingerprint="",
    )
    task = train(
        model_config={"family": "basic", "width": 4, "name": "tiny-basic"},
        train_data=pre.outputs["train_data"],
        val_data=pre.outputs["val_data"],
        test_data=pre.outputs["test_data"],
        epochs=1,
        batch_size=16,
        learning_rate=0.01,
        refer_coverage=0.9,
        image_size=32,
        seed=1,
        mlflow_tracking_uri=tracking_uri,
        experiment_name="test-components",
        data_fingerprint=pre.outputs["fingerprint"],
    )
    return task.outputs["Output"]
