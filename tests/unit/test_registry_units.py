"""The promotion rule, hand-worked: one order, said the same way in code, summary and manual (docs/how-it-works.md)."""

import itertools
from pathlib import Path

import pytest

from components.core.modeling.train_config import TrainConfig
from components.core.registry import selection, versions
from components.core.reporting import promotion_report
from components.core.step_results import TrainSummary

ROOT = Path(__file__).resolve().parents[2]


def scored(acc, auc):
    return {"val": {"accuracy": acc, "auc": auc}}


def test_accuracy_then_auc_then_the_newer_version():
    assert selection.quality_key(scored(0.90, 0.80), 2) > selection.quality_key(scored(0.89, 0.99), 3)
    assert selection.quality_key(scored(0.90, 0.95), 2) > selection.quality_key(scored(0.90, 0.94), 3)
    # An exact tie: the newer version (the newcomer) ranks higher, so it is promoted.
    assert selection.quality_key(scored(0.90, 0.95), 4) > selection.quality_key(scored(0.90, 0.95), 3)
    # An undefined AUC (one class in validation) ranks below any real one.
    assert selection.quality_key(scored(0.90, float("nan")), 5) < selection.quality_key(scored(0.90, 0.10), 1)


def test_the_rule_is_stated_in_the_summary_and_the_readme():
    assert "at least as good" in selection.PROMOTION_RULE and "exact tie the newer model" in selection.PROMOTION_RULE
    metrics = {"accuracy": 0.9, "auc": 0.95, "sensitivity": 0.9, "specificity": 0.9}
    result = TrainSummary(
        "basic", "basic", "run-1", "runs:/run-1/model", 0.5, metrics, metrics, 1000, 5.0, TrainConfig()
    )
    reg = versions.Registration("m", "2", "models:/m/2", "challenger", False, "1", None)
    summary = promotion_report.summary_markdown([result], result, reg)
    assert "| basic (winner) | 0.900 | 0.950 |" in summary and selection.PROMOTION_RULE in summary
    readme = " ".join((ROOT / "docs" / "how-it-works.md").read_text().split())
    assert "only if it is at least as good as the model already there" in readme
    assert "an exact tie goes to the newer model" in readme


def trained(name, acc, auc, params, run_id=""):
    val = {"accuracy": acc, "auc": auc}
    return TrainSummary(name, "basic", run_id or f"run-{name}", "", 0.5, val, val, params, 0.0, TrainConfig())


def test_a_nan_auc_ranks_last_whatever_the_input_order():
    # Equal accuracy 0.80: B's AUC is undefined (one class in its validation scores), so A wins,
    # and it wins from both orders (max() with a raw NaN in the key returned the first one given).
    a, b = trained("A", 0.80, 0.70, 5000), trained("B", 0.80, float("nan"), 1000)
    assert selection.select_winner([a, b]) is a
    assert selection.select_winner([b, a]) is a


def test_the_ranking_is_one_order_from_every_input_order():
    models = [
        trained("wide", 0.90, 0.95, 9000),  # 1st: best accuracy
        trained("narrow", 0.85, 0.97, 2000),  # 3rd: accuracy first, AUC only breaks ties
        trained("small", 0.85, 0.97, 1000),  # 2nd: same accuracy and AUC as narrow, fewer parameters
        trained("nan-auc", 0.85, float("nan"), 500),  # 4th: an undefined AUC ranks below any real one
        trained("worst", 0.60, 0.99, 100),  # 5th
    ]
    for given in itertools.permutations(models):  # all 120 input orders
        assert [m.name for m in sorted(given, key=selection.rank_key)] == [
            "wide",
            "small",
            "narrow",
            "nan-auc",
            "worst",
        ], [m.name for m in given]
        assert selection.select_winner(list(given)).name == "wide"


def test_identical_models_are_ordered_by_name_then_run():
    twins = [
        trained("b", 0.8, 0.9, 10, "run-2"),
        trained("a", 0.8, 0.9, 10, "run-9"),
        trained("b", 0.8, 0.9, 10, "run-1"),
    ]
    for order in itertools.permutations(twins):
        assert [(m.name, m.run_id) for m in sorted(order, key=selection.rank_key)] == [
            ("a", "run-9"),
            ("b", "run-1"),
            ("b", "run-2"),
        ]


def test_no_models_is_an_error():
    with pytest.raises(ValueError, match="no trained models to select from"):
        selection.select_winner([])
