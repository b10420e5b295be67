"""Small data and models for the reliability tests: unique raw images, and tiny Keras models
of KNOWN quality on a probe data set (so tests can tell the better model from the worse).

Probe data: channel R says the label exactly (benign 200, malignant 50); channel G agrees
with the label for 70 % of the images; channel B is constant. Probe models read the mean
of one channel: ``A`` (reads R) is perfect, ``B`` (reads G) is right 70 % of the time,
``C`` (constant) calls everything benign (50 %).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROBE_MODELS = {
    "A": ((-20.0, 0.0, 0.0), 10.0),
    "B": ((0.0, -20.0, 0.0), 10.0),
    "C": ((0.0, 0.0, 0.0), -5.0),
}


def write_raw(root, train: int = 12, test: int = 4, size: int = 24, seed: int = 0, benign_train: int | None = None):
    """A small raw layout of UNIQUE noisy JPEGs (no two files share bytes), red-ish = malignant.

    ``benign_train`` overrides the benign count in train (for class imbalance)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", train), ("test", test)):
        for label, cls in enumerate(("benign", "malignant")):
            count = benign_train if (split == "train" and label == 0 and benign_train is not None) else n
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = np.array([220, 60, 40] if label else [40, 60, 220], dtype=np.int16)
                pixels = np.clip(base + rng.integers(-30, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
    return root


def write_probe_splits(root, per_class: int = 10, size: int = 16, seed: int = 3) -> dict[str, str]:
    """Preprocessed ``val`` and ``test`` splits of probe images; returns their paths."""
    from PIL import Image

    from components.core.data import dataset
    from components.core.data.dataset.shards import _build_split, _commit, _partial_dir

    rng = np.random.default_rng(seed)
    root = Path(root)
    paths = {}
    for split in ("val", "test"):
        raw = root / "probe-raw" / split
        items = []
        for label, cls in enumerate(dataset.CLASSES):
            folder = raw / cls
            folder.mkdir(parents=True, exist_ok=True)
            agree = np.arange(per_class) < round(per_class * 0.7)
            for i in range(per_class):
                g_label = label if agree[i] else 1 - label
                pixels = np.empty((size, size, 3), dtype=np.uint8)
                pixels[..., 0] = 50 if label else 200
                pixels[..., 1] = 50 if g_label else 200
                pixels[..., 2] = 128
                pixels[0, 0, 2] = int(rng.integers(0, 256))  # unique bytes per file
                path = folder / f"{i:03d}.png"
                Image.fromarray(pixels).save(path)
                items.append(dataset.RawImage(str(path), f"{split}/{cls}/{i:03d}.png", split, label))
        out = root / "probe" / split
        # As preprocess writes a split: build it in a partial directory, then commit it into place.
        _build_split(items, _partial_dir(out), size, split, "probe", extra_manifest={"seed": 0, "val_fraction": 0.5})
        _commit(_partial_dir(out), out)
        paths[split] = str(out)
    return paths


def probe_model(kind: str):
    """A 4-parameter Keras model: sigmoid(w . mean(RGB / 255) + b), raw uint8 pixels in."""
    from tests.support.probe_data import linear_model

    weights, bias = PROBE_MODELS[kind]
    return linear_model(weights, bias, name=f"probe{kind}")


def log_probe_model(kind: str, experiment_id: str, image_size: int = 16):
    """Log probe model ``kind`` in its own MLflow run; returns its TrainSummary, as training makes."""
    from tests.support.probe_data import log_model_run

    return log_model_run(probe_model(kind), experiment_id, f"probe-{kind}", image_size=image_size)


# --- worker processes for the concurrent champion test (spawned, so each is a fresh "pipeline run") ---


def worker_init(tracking_uri: str) -> None:
    import os

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: F401  (import once per worker, not inside the race)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)


def worker_warm(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def worker_log_probe_models(experiment: str) -> dict:
    from components.core.registry import tracking

    experiment_id = tracking.setup(None, experiment)
    return {kind: log_probe_model(kind, experiment_id) for kind in PROBE_MODELS}


def worker_register(winner, name: str, val_path: str, test_path: str, delay: float = 0.0) -> dict:
    import os
    import time

    from components.core.data.dataset import SplitArrays
    from components.core.registry import versions

    time.sleep(delay)
    started = time.time()
    reg = versions.register_winner(
        winner, name, SplitArrays(val_path), SplitArrays(test_path), {"model_name": winner.name}
    )
    return {
        "version": reg.version,
        "alias": reg.alias,
        "champion_version": reg.champion_version,
        "pid": os.getpid(),
        "started": started,
        "finished": time.time(),
    }
