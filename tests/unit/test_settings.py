"""One settings module: every environment variable declared once, read only there, documented."""

import re
from pathlib import Path

import pytest

from components.core import settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = sorted(p for d in ("components", "pipelines") for p in (ROOT / d).rglob("*.py"))
# Reading the environment: os.environ.get(...), os.getenv(...), os.environ["X"] not followed by "=".
ENV_READ = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[[^\]]+\](?!\s*=[^=])")


def test_only_the_settings_module_reads_the_environment():
    readers = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in PRODUCT
        if p.name != "settings.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if ENV_READ.search(line)
    ]
    assert readers == []


def test_every_variable_named_in_the_product_is_declared():
    declared = {e.name for e in settings.ENV}
    named = set()
    for path in PRODUCT:
        named |= set(re.findall(r"settings\.env(?:_number)?\(\s*\"([A-Z0-9_]+)\"", path.read_text()))
    assert named and named <= declared


def test_readme_settings_table_matches_the_declarations():
    readme = (ROOT / "docs" / "settings.md").read_text()
    section = readme.split("# Settings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", section, re.M)
    documented = {name: default.strip().strip("`") for name, default in rows}
    assert documented == {e.name: e.default or "-" for e in settings.ENV}


def test_values_come_from_the_environment_else_the_declared_default(monkeypatch):
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    assert settings.env_number("AWS_MAX_ATTEMPTS", int) == 8
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert settings.env_number("AWS_MAX_ATTEMPTS", int) == 3
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "three")
    with pytest.raises(settings.SettingError, match="AWS_MAX_ATTEMPTS='three' is not a number"):
        settings.env_number("AWS_MAX_ATTEMPTS", int)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "0")
    with pytest.raises(settings.SettingError, match="must be positive"):
        settings.env_number("AWS_MAX_ATTEMPTS", int)
    with pytest.raises(KeyError, match="not a declared setting"):
        settings.env("SKIN_CANCER_UNDECLARED")


def test_images_flags_then_environment_then_this_versions_defaults(monkeypatch):
    monkeypatch.delenv("SKIN_CANCER_IMAGE", raising=False)
    monkeypatch.delenv("SKIN_CANCER_TRAIN_IMAGE", raising=False)
    version = settings.version()
    assert settings.images() == (
        f"ghcr.io/skin-cancer-kfp/skin-cancer:{version}",
        f"ghcr.io/skin-cancer-kfp/skin-cancer-gpu:{version}",
    )
    assert settings.images("r/a:1") == ("r/a:1", "r/a:1")  # one image for every task
    assert settings.images("r/a:1", "r/g:1") == ("r/a:1", "r/g:1")
    monkeypatch.setenv("SKIN_CANCER_IMAGE", "r/env:2")
    assert settings.images() == ("r/env:2", "r/env:2")
    assert settings.images("r/flag:3") == ("r/flag:3", "r/flag:3")


def test_the_version_is_pyprojects():
    import tomllib

    assert settings.version() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
