"""Extending is one place: the recorded libraries and the extras follow pyproject."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from isicstack import extras
from isicstack.conditions import library_versions
from isicstack.extras import DISTRIBUTIONS, MissingExtraError, require

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict[str, str]:
    """Each non-dev distribution of pyproject.toml -> its extra ('' = core), read with
    ``packaging`` (independently of isicstack.extras)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    out: dict[str, str] = {}
    for extra, reqs in groups.items():
        for raw in reqs:
            name = canonicalize_name(Requirement(raw).name)
            if extra != "dev" and name != "isicstack":
                out.setdefault(name, extra)
    return out


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_declared_follows_pyproject_installed_or_not(monkeypatch):
    assert extras.declared() == _pyproject()  # from the installed distribution's metadata

    def not_installed(name: str) -> list[str]:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    assert extras.declared() == _pyproject()  # from pyproject.toml beside the package


def test_libraries_are_every_declared_dependency_installed():
    versions = library_versions()
    expected = {name for name in _pyproject() if _installed(name)}
    assert set(versions) == expected and {"torch", "lightgbm", "catboost", "pyyaml"} <= expected
    assert list(versions) == sorted(versions)
    assert not {"pytest", "ruff", "import-linter", "isicstack"} & set(versions)


def test_require_names_the_extra_of_each_optional_module(monkeypatch):
    to_import = {dist: module for module, dist in DISTRIBUTIONS.items()}
    optional = {name: extra for name, extra in _pyproject().items() if extra}
    assert optional
    for dist, extra in optional.items():
        module = to_import.get(dist, dist.replace("-", "_"))
        monkeypatch.setitem(sys.modules, module, None)  # import now fails as if not installed
        with pytest.raises(MissingExtraError,
                           match=rf"^uses it needs .*{module}.*isicstack\[{extra}\].*or skip$"):
            require(module, needed_by="uses it", instead="skip")
    monkeypatch.setitem(sys.modules, "polars_nope", None)  # not an extra: the plain error
    with pytest.raises(ModuleNotFoundError) as err:
        require("polars_nope", needed_by="x", instead="y")
    assert not isinstance(err.value, MissingExtraError)
