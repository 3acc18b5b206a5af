"""Drift check by adversarial validation: can a GBDT tell train rows from test rows?

If it can (AUC well above 0.5), the test file differs from train in the columns it relies on,
and CV scores may not carry over; its feature importance says which columns. Only the columns
the test file carries are used (``data/schema.py``), identifiers excluded, and the CV groups
rows by patient, so the model cannot win by recognising a patient's other lesions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from isicstack.data.io import load_metadata
from isicstack.data.layout import TEST_META, TRAIN_META
from isicstack.data.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from isicstack.data.sections import skipped, skipped_lines
from isicstack.evaluation.config import DriftConfig

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
TITLE = "Drift check (adversarial validation)"


def encode(train: pl.DataFrame, test: pl.DataFrame,
           features: tuple[str, ...] = FEATURES) -> tuple[np.ndarray, list[int]]:
    """Train rows then test rows as one float matrix; categoricals as shared integer codes."""
    both = pl.concat([train.select(features), test.select(features)], how="vertical_relaxed")
    cols, cat_idx = [], []
    for j, name in enumerate(features):
        col = both.get_column(name)
        if name in CATEGORICAL_FEATURES:
            levels = sorted(col.drop_nulls().unique().to_list())
            col = col.replace_strict(levels, list(range(len(levels))), default=None)
            cat_idx.append(j)
        cols.append(col.cast(pl.Float64).fill_null(np.nan).to_numpy())
    return np.column_stack(cols), cat_idx


def adversarial_auc(x: np.ndarray, is_test: np.ndarray, groups: np.ndarray,
                    names: list[str], cat_idx: list[int], cfg: DriftConfig) -> dict[str, Any]:
    """Out-of-fold AUC of a LightGBM separating test from train, and its gain importance."""
    n_test_groups = np.unique(groups[is_test == 1]).size
    n_folds = max(2, min(cfg.n_folds, n_test_groups, np.unique(groups[is_test == 0]).size))
    oof = np.zeros(is_test.size)
    gain = np.zeros(len(names))
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=cfg.seed)
    for tr, va in splitter.split(x, is_test, groups):
        model = lgb.LGBMClassifier(
            n_estimators=cfg.num_rounds, learning_rate=cfg.learning_rate,
            num_leaves=cfg.num_leaves, min_child_samples=10, subsample=0.8, subsample_freq=1,
            colsample_bytree=0.8, random_state=cfg.seed, verbose=-1)
        model.fit(x[tr], is_test[tr], categorical_feature=cat_idx or "auto")
        oof[va] = model.predict_proba(x[va])[:, 1]
        gain += model.booster_.feature_importance(importance_type="gain")
    share = gain / gain.sum() if gain.sum() > 0 else gain
    order = np.argsort(-share, kind="stable")
    return {"auc": float(roc_auc_score(is_test, oof)), "n_folds": n_folds,
            "importance": {names[i]: float(share[i]) for i in order}}


def drift_check(train: pl.DataFrame, test: pl.DataFrame, cfg: DriftConfig,
                source: str = "") -> dict[str, Any]:
    """Adversarial validation of ``train`` vs ``test`` metadata; a warning when AUC is high."""
    out: dict[str, Any] = {"source": source, "train_rows": train.height,
                           "test_rows": test.height, "auc_warn": cfg.auc_warn}
    if test.height < cfg.min_test_rows:
        return skipped(f"the test file has {test.height} row(s); adversarial validation needs "
                       f"at least {cfg.min_test_rows} (drift.min_test_rows)", **out)
    if train.height > cfg.max_train_rows:
        train = train.sample(cfg.max_train_rows, seed=cfg.seed)
        out["train_rows_used"] = cfg.max_train_rows
    x, cat_idx = encode(train, test)
    is_test = np.r_[np.zeros(train.height), np.ones(test.height)].astype(np.int64)
    groups = np.r_[train["patient_id"].to_numpy(), test["patient_id"].to_numpy()].astype(str)
    out.update(adversarial_auc(x, is_test, groups, list(FEATURES), cat_idx, cfg))
    out["warning"] = out["auc"] > cfg.auc_warn
    top = list(out["importance"])[:3]
    if out["warning"]:
        log.warning("drift: a GBDT tells test from train rows with AUC %.3f (> %.2f), driven "
                    "by %s: CV scores may not carry over to this test set", out["auc"],
                    cfg.auc_warn, ", ".join(top))
    else:
        log.info("drift: adversarial AUC %.3f (warn above %.2f)", out["auc"], cfg.auc_warn)
    return out


def drift_section(data_dir: Path, cfg: DriftConfig) -> dict[str, Any] | None:
    """The drift check on ``data_dir``'s train and test metadata; None when either is absent."""
    train_path, test_path = data_dir / TRAIN_META, data_dir / TEST_META
    if not (train_path.is_file() and test_path.is_file()):
        log.info("drift: skipped, %s or %s not found", train_path, test_path)
        return None
    test = load_metadata(test_path, "test")
    if test.height < cfg.min_test_rows:  # Kaggle's 3-row file: no need to read 401k train rows
        return drift_check(test.head(0), test, cfg, source=str(data_dir))
    return drift_check(load_metadata(train_path, "train"), test, cfg, source=str(data_dir))


def markdown(section: dict[str, Any] | None, top: int = 10) -> list[str]:
    """Report lines: the AUC, a warning when high, and the features that separate the sets."""
    if not section:
        return []
    if (done := skipped_lines(TITLE, section)) is not None:
        return done
    lines = [f"\n## {TITLE}\n"]
    lines.append(f"A LightGBM trained to tell test rows ({section['test_rows']}) from train rows "
                 f"({section.get('train_rows_used', section['train_rows'])}) of "
                 f"`{section['source']}` on the test file's columns, {section['n_folds']}-fold "
                 f"CV grouped by patient: **AUC {section['auc']:.3f}** (0.5 = indistinguishable).")
    if section["warning"]:
        lines.append(f"\n**Warning**: AUC above {section['auc_warn']:.2f}: the test set differs "
                     "from train in the columns below; CV scores may not carry over.")
    lines += ["\n| feature | share of gain |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in list(section["importance"].items())[:top]]
    return lines
