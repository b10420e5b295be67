"""Training input measurement (runs in its own process): the project's uint8 shards through
``make_dataset`` against the reference's float64 arrays through ``model.fit``."""

from __future__ import annotations

import time

from benchmarks.memory import Mark

TINY_STEPS_FACTOR = 10  # the tiny model's steps are ~100x shorter: more of them for a measurable time


def config(image_size: int, batch_size: int, steps_per_epoch: int, epochs: int) -> dict:
    """What the training benchmark ran, for the report."""
    return {
        "image_size": image_size,
        "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch,
        "epochs": epochs,
        "timed": f"epochs 2..{epochs} ({(epochs - 1) * steps_per_epoch} steps, tiny model "
        f"x{TINY_STEPS_FACTOR}); epoch 1 is warm-up; the reference's arrays end an "
        "epoch early when one pass has fewer batches",
        "models": "basic: the project's basic CNN with its default augmentation; tiny: global pooling + dense (input-bound)",
        "project_input": "make_dataset over uint8 memory-mapped shards (shuffle, batch, gather, prefetch), "
        "uint8 into the model, 1 sigmoid unit, binary cross-entropy",
        "reference_input": "float64 /255 array and float64 one-hot labels in memory, model.fit(x, y, shuffle=True); "
        "the same graph with a float input scaled x255 and a 2-unit softmax head, "
        "categorical cross-entropy",
        "optimizer": "AdamW 1e-3 for both",
    }


def _bench_model(spec, backbone, float_input: bool, seed: int):
    """The project's model graph (see components.core.modeling.models.build_model) with a chosen input and head.

    ``float_input``: the reference's input, floats in [0, 1] scaled back to 0-255 by the first
    layer, and its head: a 2-unit softmax for one-hot labels.
    """
    import keras
    from keras import layers

    from components.core.modeling.models import augmentation

    keras.utils.set_random_seed(seed)
    if float_input:
        inputs = keras.Input(shape=(None, None, 3), name="image")  # float32; Keras casts the float64 arrays
        x = layers.Rescaling(255.0, name="to_0_255")(inputs)
    else:
        inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
        x = layers.Rescaling(1.0, name="to_float")(inputs)
    x = layers.Resizing(spec.image_size, spec.image_size, antialias=True, name="resize")(x)
    if spec.augment:
        x = augmentation(seed)(x)
    x = layers.Dropout(spec.dropout, seed=seed)(backbone(x, spec))
    if float_input:
        outputs = layers.Dense(2, activation="softmax", dtype="float32", name="p")(x)
    else:
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_malignant")(x)
    return keras.Model(inputs, outputs, name="bench")


def m_train_input(
    kind: str, split_dir: str, batch_size: int, steps_per_epoch: int, epochs: int, model: str = "basic", seed: int = 42
) -> dict:
    """Training images/s for one input path; the first epoch (tracing, warm-up) is not timed.

    ``kind``: "project" (make_dataset over uint8 shards, the project's model) or "reference"
    (float64 /255 arrays and float64 one-hot labels into model.fit, the same graph with a
    float input and a 2-unit softmax head). ``model``: "basic" or "tiny" (global pooling +
    dense: the input path is the bottleneck).
    """
    import keras
    import numpy as np
    import tensorflow as tf
    from keras import layers

    from components.core.data.dataset import SplitArrays
    from components.core.modeling.models import MODEL_FAMILIES, ModelSpec, build_model
    from components.core.modeling.training import make_dataset

    gpus = tf.config.list_physical_devices("GPU")
    keras.mixed_precision.set_global_policy("float32")  # the same arithmetic for both input paths
    split = SplitArrays(split_dir)
    if model == "tiny":
        spec = ModelSpec(family="basic", image_size=split.image_size, augment=False)
        backbone = lambda x, s: layers.GlobalAveragePooling2D()(x)  # noqa: E731
    else:
        spec = ModelSpec(family=model, image_size=split.image_size)  # the project's defaults
        backbone = MODEL_FAMILIES[model]
    optimizer = keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4)
    # Whole batches only, so images/s counts exactly steps x batch size for both inputs.
    held = max(batch_size, len(split) // batch_size * batch_size)
    idx = np.arange(min(held, len(split)))
    if kind == "project":
        net = build_model(spec, seed=seed) if model != "tiny" else _bench_model(spec, backbone, False, seed)
        net.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(), metrics=["accuracy"])
        # .repeat(): epochs here are a fixed number of steps, not passes over the data.
        fit_args = {"x": make_dataset(split, batch_size, idx, shuffle=True, seed=seed).repeat()}
    elif kind == "reference":
        net = _bench_model(spec, backbone, True, seed)
        net.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
        x = np.empty((len(idx), split.image_size, split.image_size, 3), dtype=np.float64)
        x[:] = split.gather(idx)
        x /= 255  # the reference's float64 arrays, as unpickled
        y = np.eye(2)[split.labels[idx].astype(int)]  # float64 one-hot
        fit_args = {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    else:
        raise ValueError(f"unknown kind {kind!r}")

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[float] = []
            self.steps: list[int] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            self.steps.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.steps[-1] += 1

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self.t0)

    timer = Timer()
    mark = Mark()
    net.fit(**fit_args, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=[timer], verbose=0)
    total = mark.done(0)
    timed_s = sum(timer.epochs[1:])
    timed_steps = sum(timer.steps[1:])
    images = timed_steps * batch_size
    return {
        "images": images,
        "seconds": round(timed_s, 3),
        "images_per_s": round(images / timed_s, 2) if timed_s > 0 else None,
        "warmup_seconds": round(timer.epochs[0], 3) if timer.epochs else None,
        "epoch_seconds": [round(t, 3) for t in timer.epochs],
        "steps_per_epoch": timer.steps,
        "fit_seconds": total["seconds"],
        "cpu_seconds": total["cpu_seconds"],
        "rss_before_work_mb": total["rss_before_work_mb"],
        "params": int(net.count_params()),
        "train_images_held": len(idx),
        "device": f"{len(gpus)} gpu" if gpus else "cpu",
    }
