"""Slow tier of integration/test_cluster_compile.py: The pipeline as a cluster gets it: the compiled IR YAML, read back and checked piece by piece,"""

import shutil

import pytest


@pytest.mark.slow
def test_recurring_runs_reuse_preprocessing_only_while_the_data_is_unchanged(tmp_path, demo_raw):
    """Three runs with KFP's local cache on: unchanged data -> preprocessing comes from the cache;
    one new image under the same URI -> the fingerprint changes and preprocessing runs again."""
    import mlflow
    from kfp import dsl, local

    from components.fingerprint import fingerprint_data
    from components.preprocess import preprocess

    data = tmp_path / "raw"
    shutil.copytree(demo_raw, data)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
        enable_caching=True,
    )

    @dsl.pipeline(name="fingerprint-then-preprocess")
    def wiring(data_uri: str) -> str:  # the two tasks wired as in build_pipeline
        fp = fingerprint_data(data_uri=data_uri).set_caching_options(False)
        pre = preprocess(
            data_uri=data_uri,
            image_size=16,
            val_fraction=0.25,
            seed=1,
            max_bad_fraction=0.0,
            mlflow_tracking_uri=tracking,
            experiment_name="cache-test",
            data_fingerprint=fp.outputs["fingerprint"],
        )
        return pre.outputs["fingerprint"]

    def preprocess_runs() -> int:
        mlflow.set_tracking_uri(tracking)
        return len(mlflow.search_runs(experiment_names=["cache-test"], filter_string="tags.stage = 'preprocess'"))

    first = wiring(data_uri=str(data)).output
    assert preprocess_runs() == 1
    second = wiring(data_uri=str(data)).output
    assert second == first and preprocess_runs() == 1  # cache hit: preprocessing did not run
    shutil.copy(next((data / "train" / "malignant").glob("*.jpg")), data / "train" / "malignant" / "new-arrival.jpg")
    third = wiring(data_uri=str(data)).output
    assert third != first and preprocess_runs() == 2  # new image, new key: preprocessing ran
