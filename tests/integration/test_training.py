"""Model zoo, training, input pipeline and MLflow logging (real `mlflow server`)."""

import numpy as np
import pytest

from components.core.data.dataset import SplitArrays
from components.core.modeling import models
from components.core.modeling.training import TrainConfig, fit_one, make_dataset

TINY = dict(epochs=1, batch_size=16, image_size=32, early_stopping_patience=0)


@pytest.fixture(scope="module")
def splits(preprocessed):
    return [SplitArrays(str(preprocessed / s)) for s in ("train", "val", "test")]


def check_one_step(family: str, splits) -> None:
    """The family builds, trains a step, and takes raw uint8 images of any size to p in [0, 1]."""
    cfg = TrainConfig(family=family, width=8, **TINY)
    model, history = fit_one(cfg, splits[0], splits[1])
    assert np.isfinite(history["loss"][0])
    raw = np.random.default_rng(0).integers(0, 256, (3, 57, 41, 3), dtype=np.uint8)  # any size, uint8
    p = np.asarray(model(raw, training=False)).reshape(-1)
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()


def test_the_basic_family_builds_and_trains_a_step(splits):
    check_one_step("basic", splits)  # the other families: tests/slow/test_training.py


def test_basic_cnn_has_no_shared_conv_layers():
    model = models.build_model(models.ModelSpec(family="basic", image_size=32, augment=False, width=4))
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(convs) == 8 and len({id(c) for c in convs}) == 8
    assert len({id(w) for c in convs for w in c.weights}) == 8  # no weight object used twice
    shapes = [tuple(c.kernel.shape) for c in convs]
    assert shapes[0] == (3, 3, 3, 4) and shapes[1] == (3, 3, 4, 4) and shapes[2] == (3, 3, 4, 8)


def test_registry_lists_all_families():
    assert {"basic", "crossval", "resnet50", "efficientnet", "mobilenetv3"} <= set(models.family_names())
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        models.build_model(models.ModelSpec(family="nope", image_size=32))


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        TrainConfig.from_dict({"family": "basic", "learnig_rate": 0.1})
    assert TrainConfig.from_dict({"epochs": 3.0, "learning_rate": 1}).epochs == 3


def test_input_pipeline_yields_uint8_batches(splits):
    ds = make_dataset(splits[0], 8, shuffle=True, seed=1)
    x, y = next(iter(ds))
    assert x.dtype.name == "uint8" and tuple(x.shape[1:]) == (32, 32, 3) and y.dtype.name == "float32"
    labels = np.concatenate([b[1].numpy() for b in make_dataset(splits[0], 8)])
    assert np.array_equal(labels, splits[0].labels.astype(np.float32))


def test_freeze_below_freezes_exactly_the_layers_before_the_named_block():
    import keras

    inputs = keras.Input(shape=(4,), name="input")
    x = inputs
    for name in ("stem_dense", "block1a_dense", "block4b_dense", "block5a_dense", "block5b_dense", "top_dense"):
        x = keras.layers.Dense(2, name=name)(x)
    backbone = keras.Model(inputs, x, name="backbone")
    models.freeze_below(backbone, "block5")
    assert {layer.name: layer.trainable for layer in backbone.layers} == {
        "input": False,
        "stem_dense": False,
        "block1a_dense": False,
        "block4b_dense": False,
        "block5a_dense": True,
        "block5b_dense": True,
        "top_dense": True,
    }
    # Only the last three layers' kernels and biases train: 3 x (4 + 2) values.
    assert sum(int(np.prod(w.shape)) for w in backbone.trainable_weights) == 18
    with pytest.raises(ValueError, match="fine_tune_from 'block9' names no layer of backbone"):
        models.freeze_below(backbone, "block9")
