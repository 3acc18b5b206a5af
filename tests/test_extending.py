"""Extending is one place: a GBDT registered in a test is trained, saved, loaded, predicted and
tuned with no other file edited; the recorded libraries and the extras follow pyproject."""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from isicstack import extras
from isicstack.conditions import library_versions
from isicstack.extras import DISTRIBUTIONS, MissingExtraError, require
from isicstack.pipelines.config import TuneConfig
from isicstack.pipelines.tune_space import load_space
from isicstack.tabular.config import ModelSpec, TabularConfig
from isicstack.tabular.cv import run
from isicstack.tabular.models import (
    GBDT,
    MODEL_KINDS,
    LGBMModel,
    XGBModel,
    load_model,
    make_model,
    register_model,
)
from isicstack.tabular.predict import TabularPredictor

REPO = Path(__file__).resolve().parents[1]
TINY_SPACE = {"shrink": {"type": "float", "low": 0.0, "high": 0.5}}


@pytest.fixture()
def tiny() -> type[GBDT]:
    """A GBDT library of one class: the training rows' positive rate, shrunk, for every row."""

    @register_model
    class TinyModel(GBDT):
        kind, suffix, space = "tiny", ".tiny", TINY_SPACE

        def fit(self, X, y, names, categorical, seed, prepared=None):
            self.model = float(np.mean(y)) * (1 - self.params.get("shrink", 0.0))
            return self

        def predict(self, X):
            return np.full(len(X), self.model)

        def _save(self, path):
            path.write_text(json.dumps(self.model))

        @classmethod
        def load(cls, path):
            obj = cls({}, 0)
            obj.model = json.loads(Path(path).read_text())
            return obj

    yield TinyModel
    MODEL_KINDS.pop("tiny")


def test_a_registered_gbdt_is_made_loaded_and_tuned(tiny, tmp_path: Path, monkeypatch):
    model = make_model("tiny", {"shrink": 0.5}, 1).fit(np.zeros((4, 1)), np.array([0, 1, 1, 1]),
                                                       ["a"], [], seed=0)
    again = load_model(model.save(tmp_path / "m"))
    assert type(again) is tiny and again.predict(np.zeros((2, 1))).tolist() == [0.375, 0.375]
    monkeypatch.setenv("ISIC_CONFIG_DIR", str(tmp_path))  # a user folder without a space file
    assert load_space(TuneConfig(model="tiny")) == TINY_SPACE
    with pytest.raises(ValueError, match="kind 'tiny'.*already taken by TinyModel"):
        register_model(type("Again", (tiny,), {}))
    with pytest.raises(ValueError, match=r"suffix '\.txt'.*LGBMModel"):
        register_model(type("Copy", (tiny,), {"kind": "copy", "suffix": ".txt"}))
    with pytest.raises(TypeError, match="Bare.*'space'"):
        register_model(type("Bare", (tiny,), {"kind": "bare", "suffix": ".bare", "space": {}}))
    assert set(MODEL_KINDS) == {"lgbm", "xgb", "cat", "tiny"}


def test_the_cv_loop_and_the_predictor_use_a_registered_gbdt(tiny, mini_isic: Path,
                                                             mini_artifacts: Path,
                                                             tmp_path: Path):
    art = tmp_path / "art"  # not the shared folder: the stack tests read every oof file there
    art.mkdir()
    for name in ("folds.parquet", "folds.json"):
        shutil.copy2(mini_artifacts / name, art / name)
    cfg = TabularConfig(data_dir=str(mini_isic), artifacts=str(art), bags=1, threads=1,
                        models={"tiny": ModelSpec("tiny", num_rounds=1,
                                                  params={"shrink": 0.5})})
    [result] = run(cfg)
    assert (result.stage, result.name) == ("tabular", "tiny")
    folds = pl.read_parquet(art / "folds.parquet")
    oof = pl.read_parquet(art / "oof" / "tiny.parquet")
    for k in range(3):  # each fold scored with the other folds' positive rate, shrunk by half
        rate = folds.filter(pl.col("fold") != k)["target"].mean()
        np.testing.assert_allclose(oof.filter(pl.col("fold") == k)["pred"], 0.5 * rate)
    saved = sorted((art / "runs" / "tiny" / "models").iterdir())
    assert [p.suffix for p in saved] == [".tiny"] * 3
    predictor = TabularPredictor(art, "tiny")
    assert all(type(m) is tiny for m in predictor.models)


def test_a_user_space_file_replaces_the_kinds_it_names(tmp_path: Path, monkeypatch):
    (tmp_path / "tune").mkdir()
    mine = {"lgbm": {"num_leaves": {"type": "int", "low": 4, "high": 8}}}
    (tmp_path / "tune" / "tabular.yaml").write_text(yaml.safe_dump(mine))
    monkeypatch.setenv("ISIC_CONFIG_DIR", str(tmp_path))
    assert load_space(TuneConfig(model="lgbm")) == mine["lgbm"]
    assert load_space(TuneConfig(model="xgb")) == XGBModel.space  # not in the file: registered
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"lgmb": mine["lgbm"]}))
    with pytest.raises(ValueError, match=r"other\.yaml: search spaces \['lgmb'\] name no model"):
        load_space(TuneConfig(model="lgbm", space_file=str(other)))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_space(TuneConfig(model="lgbm", space_file=str(tmp_path / "nope.yaml")))
    with pytest.raises(ValueError, match="unknown model kind 'rf'"):
        load_space(TuneConfig(model="rf"))
    monkeypatch.setenv("ISIC_CONFIG_DIR", str(tmp_path / "tune"))  # holds no tune/ folder
    assert load_space(TuneConfig(model="lgbm")) == LGBMModel.space


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
