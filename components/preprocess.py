"""Stage 1: raw images in S3 (or a local folder) -> train/val/test uint8 Dataset artifacts."""


from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.config import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def preprocess(
    data_uri: str,
    image_size: int,
    val_fraction: float,
    seed: int,
    max_bad_fraction: float,
    mlflow_tracking_uri: str,
    experiment_name: str,
    train_data: Output[Dataset],
    val_data: Output[Dataset],
    test_data: Output[Dataset],
) -> NamedTuple("PreprocessOutputs", fingerprint=str, report=str):
    """Decode, resize and split the raw layout at ``data_uri`` into compact uint8 arrays."""
    from components.core.stages import run_preprocess

    return run_preprocess(
        data_uri, image_size, val_fraction, seed, max_bad_fraction, mlflow_tracking_uri, experiment_name,
        {"train": train_data, "val": val_data, "test": test_data},
    )
