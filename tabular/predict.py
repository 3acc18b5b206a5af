"""A saved tabular run rebuilt for offline inference from its run folder alone.

``TabularPredictor`` reads only ``artifacts/runs/<name>/`` (``config.yaml``, ``features.json``,
``metrics.json``, the model files) and scores one batch of whole patients at a time: the
per-patient features computed inside such a batch equal their whole-test-set values, because
every patient statistic is a window over the patient's own rows. ``deps`` names the models whose
scores it consumes (the 'oof' feature group), so ``isic predict`` runs those first.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.layout import read_json, require_files, run_dir
from isicstack.features.build import build_test_features
from isicstack.ledger.result import METRICS, trained_folds
from isicstack.settings.layers import read_run_config
from isicstack.tabular.config import TabularConfig
from isicstack.tabular.cv import to_matrix
from isicstack.tabular.models import GBDT, MODEL_KINDS, load_model

log = logging.getLogger(__name__)


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
                      for k in trained_folds(rdir) for b in range(self.cfg.bags)]
        require_files(self.paths, f"saved model of tabular run {name!r} (save_models: true)")
        self.files = [rdir / "config.yaml", rdir / "features.json", rdir / METRICS,
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
