"""The promotion rule, hand-worked: one order, said the same way in code, summary and README."""

from pathlib import Path

from components.core import registry

ROOT = Path(__file__).resolve().parents[1]


def scored(acc, auc):
    return {"val": {"accuracy": acc, "auc": auc}}


def test_accuracy_then_auc_then_the_newer_version():
    assert registry.quality_key(scored(0.90, 0.80), 2) > registry.quality_key(scored(0.89, 0.99), 3)
    assert registry.quality_key(scored(0.90, 0.95), 2) > registry.quality_key(scored(0.90, 0.94), 3)
    # An exact tie: the newer version (the newcomer) ranks higher, so it is promoted.
    assert registry.quality_key(scored(0.90, 0.95), 4) > registry.quality_key(scored(0.90, 0.95), 3)
    # An undefined AUC (one class in validation) ranks below any real one.
    assert registry.quality_key(scored(0.90, float("nan")), 5) < registry.quality_key(scored(0.90, 0.10), 1)


def test_the_rule_is_stated_in_the_summary_and_the_readme():
    assert "at least as good" in registry.PROMOTION_RULE and "exact tie the newer model" in registry.PROMOTION_RULE
    metrics = {"accuracy": 0.9, "auc": 0.95, "sensitivity": 0.9, "specificity": 0.9}
    result = {"name": "basic", "val": metrics, "test": metrics, "params": 1000, "seconds": 5}
    reg = registry.Registration("m", "2", "models:/m/2", "challenger", False, "1", None)
    summary = registry.summary_markdown([result], result, reg)
    assert "| basic (winner) | 0.900 | 0.950 |" in summary and registry.PROMOTION_RULE in summary
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "only if it is at least as good as the model already there" in readme
    assert "an exact tie goes to the newer model" in readme
