"""Saved level-1 models rebuilt for offline inference from their run folders alone.

A predictor reads only ``artifacts/runs/<name>/`` (``config.yaml``, ``features.json``,
``metrics.json``, the model files) and scores one batch of whole patients at a time: the
per-patient features and fusion inputs computed inside such a batch equal their whole-test-set
values, because every patient statistic is a window over the patient's own rows. ``deps`` names
the models whose scores a predictor consumes (the 'oof' feature group, image fusion), so
:func:`load_predictors` orders them to run first.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import yaml

from isicstack.config import build
from isicstack.data.layout import run_dir
from isicstack.features.build import build_test_features
from isicstack.tabular.cv import TabularConfig, to_matrix
from isicstack.tabular.models import GBDT, MODEL_KINDS, load_model

log = logging.getLogger(__name__)

IMAGE_PREFIX = "vision_"  # image runs are artifacts/runs/vision_<name> (vision.train.output_name)


class Predictor(Protocol):
    """A loaded level-1 model: its name, the models it reads scores from, and a batch scorer."""

    name: str
    deps: list[str]
    files: list[Path]  # every run file it read (what a Kaggle package must ship)

    def predict(self, rows: pl.DataFrame, preds: dict[str, np.ndarray]) -> np.ndarray:
        """Scores of ``rows`` (whole patients), given the already computed ``preds`` of deps."""
        ...


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A run file the predict path needs, or an error naming it and what writes it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found; copy the whole run folder or rerun "
                                "the training stage that writes it")
    return json.loads(path.read_text(encoding="utf-8"))


def read_run_config(cls: type, rdir: Path) -> Any:
    """The resolved training config saved beside a run (``config.yaml``), as ``cls``."""
    path = rdir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run's config.yaml not found; the predict path "
                                "rebuilds the model from it")
    return build(cls, yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def trained_folds(rdir: Path, key: str) -> list[int]:
    """Fold ids the run trained, from the per-fold entries of its ``metrics.json``."""
    metrics = read_json(rdir / "metrics.json", "metrics.json (lists the trained folds)")
    if not metrics.get(key):
        raise ValueError(f"{rdir / 'metrics.json'}: no per-fold entries under {key!r}")
    return sorted(int(k) for k in metrics[key])


def require_files(paths: list[Path], what: str) -> None:
    """Fail on the first missing model file, naming it (not just 'a file is missing')."""
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} not found ({len(paths)} expected)")


class BatchFeatures:
    """Test features of the current batch, built once for every GBDT with the same feature setup.

    The GBDTs of one tabular run (LightGBM, XGBoost, ...) share their feature config and
    category levels, so each batch's features are built once instead of once per model.
    """

    def __init__(self) -> None:
        self._rows: pl.DataFrame | None = None
        self._built: dict[tuple[str, str], Any] = {}

    def get(self, rows: pl.DataFrame, cfg: Any, categories: dict[str, list[str]],
            artifacts: Path, scores: dict[str, pl.DataFrame]) -> Any:
        if rows is not self._rows:  # a new batch: forget the previous one's features
            self._rows, self._built = rows, {}
        key = (repr(cfg), json.dumps(categories, sort_keys=True))
        if key not in self._built:
            self._built[key] = build_test_features(rows, cfg, categories, artifacts, scores)
        return self._built[key]


class TabularPredictor:
    """Every fold x bag GBDT of a tabular run, averaged as the training stage averaged them."""

    def __init__(self, artifacts: str | os.PathLike[str], name: str,
                 features: BatchFeatures | None = None) -> None:
        rdir = run_dir(artifacts, name)
        self.name, self.artifacts = name, Path(artifacts)
        self.features = features or BatchFeatures()
        self.cfg: TabularConfig = read_run_config(TabularConfig, rdir)
        key = self.cfg.model_key(name)
        if key not in self.cfg.models:
            raise ValueError(f"{rdir / 'config.yaml'}: no model {key!r} under 'models' "
                             f"(has {sorted(self.cfg.models)})")
        feats = read_json(rdir / "features.json", "feature list and category levels")
        self.names: list[str] = [*feats["numeric"], *feats["categorical"]]
        # write_json sorts keys: the column order is the saved 'categorical' list, not the dict's
        self.categories: dict[str, list[str]] = {c: feats["categories"][c]
                                                 for c in feats["categorical"]}
        suffix = MODEL_KINDS[self.cfg.models[key].kind].suffix
        self.paths = [rdir / "models" / f"fold{k}_bag{b}{suffix}"
                      for k in trained_folds(rdir, "fold_pauc") for b in range(self.cfg.bags)]
        require_files(self.paths, f"saved model of tabular run {name!r} (save_models: true)")
        self.files = [rdir / "config.yaml", rdir / "features.json", rdir / "metrics.json",
                      *self.paths]
        self.models: list[GBDT] = [load_model(p) for p in self.paths]
        f = self.cfg.features
        self.deps = list(f.oof_names) if "oof" in f.groups else []
        log.info("%s: %d %s model(s), %d features", name, len(self.models),
                 self.cfg.models[key].kind, len(self.names))

    def predict(self, rows: pl.DataFrame, preds: dict[str, np.ndarray]) -> np.ndarray:
        scores = {d: pl.DataFrame({"isic_id": rows["isic_id"], "pred": preds[d]})
                  for d in self.deps}
        fs = self.features.get(rows, self.cfg.features, self.categories, self.artifacts, scores)
        if fs.names != self.names:
            diff = sorted(set(fs.names) ^ set(self.names)) or "column order"
            raise ValueError(f"{self.name}: test features differ from the training run's "
                             f"features.json ({diff}); the code or config changed since training")
        X = to_matrix(fs.test, fs.names)
        out = np.zeros(rows.height)
        for model in self.models:  # the training stage's fold x bag mean
            out += model.predict(X) / len(self.models)
        return out


def load_predictors(names: list[str], factory: Callable[[str], Predictor]) -> list[Predictor]:
    """``names`` and everything they depend on, loaded once each, dependencies first."""
    loaded: dict[str, Predictor] = {}

    def visit(name: str, chain: list[str]) -> None:
        if name in loaded:
            return
        if name in chain:
            raise ValueError(f"model dependency cycle: {' -> '.join([*chain, name])}")
        pred = factory(name)
        for dep in pred.deps:
            visit(dep, [*chain, name])
        loaded[name] = pred

    for name in names:
        visit(name, [])
    return list(loaded.values())
