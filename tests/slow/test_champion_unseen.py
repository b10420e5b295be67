"""Slow tier of integration/test_champion_unseen.py: An honest champion comparison: a champion that trained on some of this run's validation"""

import pytest

from components.core.reporting import promotion_report
from tests.integration.test_champion_unseen import preprocess, train_and_register  # noqa: F401 (fixtures are found by name)


@pytest.mark.slow
def test_the_champion_is_compared_only_on_validation_images_it_never_trained_on(demo_raw, tmp_path, mlflow_server):
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    name = "unseen-comparison-model"
    first = preprocess(demo_raw, tmp_path / "seed1", seed=1)
    reg1 = train_and_register(
        first, [str(tmp_path / "seed1" / s) for s in ("train", "val", "test")], mlflow_server, name
    )
    assert reg1.alias == "champion"
    champion_trained = {s["sha1"] for s in first[0].manifest["sources"]}

    second = preprocess(demo_raw, tmp_path / "seed2", seed=2)
    val_sha1 = [s["sha1"] for s in second[1].manifest["sources"]]
    overlap = sum(h in champion_trained for h in val_sha1)
    assert 0 < overlap < len(val_sha1)  # the situation this test is about

    reg2 = train_and_register(
        second, [str(tmp_path / "seed2" / s) for s in ("train", "val", "test")], mlflow_server, name
    )
    comparison = reg2.previous_champion["comparison"]
    assert comparison["champion_training_set"] == "recorded"
    assert comparison["validation_images"] == len(val_sha1)
    assert comparison["compared_on"] == len(val_sha1) - overlap
    summary = promotion_report.summary_markdown([], None, reg2)
    assert f"on the {len(val_sha1) - overlap} of {len(val_sha1)} validation images it never trained on" in summary
