"""Stage 1: raw images in S3 (or a local folder) -> train/val/test uint8 Dataset artifacts."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.core.settings import default_images


# The image is set per task by build_pipeline (CompileSettings.train_image: preprocessing runs in the
# training image, so a rebuild of the runtime image keeps training cached); this is its default.
@dsl.component(base_image=default_images()[1], install_kfp_package=False)
def preprocess(
    data_uri: str,
    image_size: int,
    val_fraction: float,
    seed: int,
    max_bad_fraction: float,
    mlflow_tracking_uri: str,
    experiment_name: str,
    data_fingerprint: str,
    train_data: Output[Dataset],
    val_data: Output[Dataset],
    test_data: Output[Dataset],
    allow_leakage: bool = False,
) -> NamedTuple("PreprocessOutputs", fingerprint=str, report=str):
    """Decode, resize and split the raw layout at ``data_uri`` into compact uint8 arrays.

    ``data_fingerprint`` (from the fingerprint step) is here for KFP's cache key: the same
    URI with different images must not hit the cache. An empty string skips the check.
    ``allow_leakage`` accepts test images that also appear (same bytes) in train/val.
    """
    from components.core.steps.preprocess import run_preprocess

    result = run_preprocess(
        data_uri=data_uri,
        image_size=image_size,
        val_fraction=val_fraction,
        seed=seed,
        max_bad_fraction=max_bad_fraction,
        mlflow_tracking_uri=mlflow_tracking_uri,
        experiment_name=experiment_name,
        artifacts={"train": train_data, "val": val_data, "test": test_data},
        allow_leakage=allow_leakage,
    )
    if data_fingerprint and result.fingerprint != data_fingerprint:
        # The data changed between the two listings; the outputs carry the newer fingerprint.
        print(
            f"WARNING: {data_uri} changed during the run: listed as {data_fingerprint}, "
            f"preprocessed as {result.fingerprint}"
        )
    return result
