"""Hand-made data and models whose every score is known before the test runs.

A probe split is a preprocessed split (the real format: shards, labels, manifest, the content
hash of each source file) of images whose pixels the test chooses; a probe model is a tiny
Keras model that reads a channel's mean, ``head(w . mean(RGB / 255) + b)``, so its score on
each probe image is a number one can work out by hand. No training anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# What every probe split's manifest says, so open_splits sees train, val and test as one run.
PROBE_RUN = {"seed": 0, "val_fraction": 0.5}


def uniform(rgb: tuple[int, int, int], size: int = 8, tag: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A ``size`` x ``size`` image of one colour; ``tag`` = (channel, value) sets pixel [0, 0] of one
    channel, so images of one colour still differ in bytes (a channel no probe model reads)."""
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[...] = np.asarray(rgb, dtype=np.uint8)
    channel, value = tag
    pixels[0, 0, channel] = value
    return pixels


def write_split(root: Path, split: str, images: list[tuple[str, np.ndarray, int]], fingerprint: str = "probe") -> str:
    """Write ``images`` ((name, pixels, label), all one size) as preprocessed split ``split`` under
    ``root``, through the same code preprocess uses; returns its path."""
    from PIL import Image

    from components.core.data import dataset
    from components.core.data.dataset.shards import _build_split, _commit, _partial_dir

    root = Path(root)
    items = []
    for name, pixels, label in images:
        path = root / "raw" / split / dataset.CLASSES[label] / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)  # PNG: lossless, so the split holds exactly these pixels
        items.append(dataset.RawImage(str(path), f"{split}/{dataset.CLASSES[label]}/{name}.png", split, label))
    out = root / split
    size = images[0][1].shape[0]
    _build_split(items, _partial_dir(out), size, split, fingerprint, extra_manifest=PROBE_RUN)
    _commit(_partial_dir(out), out)
    return str(out)


def linear_model(
    weights: tuple[float, float, float], bias: float, activation: str | None = "sigmoid", name: str = "probe"
):
    """``activation(weights . mean(RGB / 255) + bias)``, raw uint8 pixels of any size in. The head is
    the Dense layer ``p_malignant``, as in every zoo model (calibration folds its temperature there)."""
    import keras

    inputs = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation=activation, name="p_malignant")(x)
    model = keras.Model(inputs, out, name=name)
    model.get_layer("p_malignant").set_weights(
        [np.asarray(weights, dtype=np.float32).reshape(3, 1), np.asarray([bias], dtype=np.float32)]
    )
    return model


def log_model_run(
    model,
    experiment_id: str,
    name: str,
    trained_on: list[str] | None = None,
    image_size: int = 8,
    threshold: float = 0.5,
):
    """Log ``model`` in its own MLflow run (with ``trained_on.json`` when given: the content hashes
    the champion comparison leaves out) and return the train summary the selection step reads.
    Its metrics are placeholders: registration scores every model itself."""
    import mlflow

    from components.core.registry import tracking

    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        info = tracking.log_model(model, threshold, image_size, "probe")
        if trained_on is not None:
            tracking.log_json({"sha1": sorted(trained_on), "count": len(trained_on)}, tracking.TRAINED_ON_ARTIFACT)
    from components.core.modeling.train_config import TrainConfig
    from components.core.step_results import TrainSummary

    placeholder = {"accuracy": 0.0, "auc": 0.0, "sensitivity": 0.0, "specificity": 0.0}
    return TrainSummary(
        name=name,
        family="probe",
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        threshold=threshold,
        val=placeholder,
        test=placeholder,
        params=int(model.count_params()),
        seconds=0.0,
        config=TrainConfig(image_size=image_size),
    )
