"""What the installed distribution puts on sys.path, and that nothing else claims the same names.

The card fixes the top-level folders `components/` and `pipelines/`, and they are the import
packages too (one name per file: mapping them under a unique parent would make every module
importable twice from a checkout, whose root is on sys.path in tests and kfp.local). The
price is generic names, so this test fails the day any dependency in the tested environment
(= images/requirements.lock) ships a top-level `components` or `pipelines` package."""

from importlib import metadata

from components.core import settings

OURS = ("components", "pipelines")


def test_no_other_installed_distribution_provides_our_top_level_packages():
    owners = metadata.packages_distributions()
    for name in OURS:
        assert set(owners.get(name, [])) == {settings.DISTRIBUTION}, (name, owners.get(name))


def test_benchmarks_and_tests_are_not_installed():
    owners = metadata.packages_distributions()
    assert settings.DISTRIBUTION not in owners.get("benchmarks", []) + owners.get("tests", [])
