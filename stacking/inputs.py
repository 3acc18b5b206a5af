"""Level-1 predictions read back from ``artifacts/``, aligned row by row to the shared folds.

Every OOF file must cover exactly the fold rows with the same fold: an OOF file made with other
folds (or other data) would leak training rows into the level-2 CV and inflate it silently.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.io import DataError
from isicstack.data.layout import oof_path, test_pred_path
from isicstack.data.metric import pauc, roc_auc

log = logging.getLogger(__name__)

STACK_PREFIX = "stack"


def discover(artifacts: str | os.PathLike[str], include_stack: bool = False) -> list[str]:
    """Sorted names of the OOF files in ``artifacts/oof`` (level-2 outputs left out by default)."""
    folder = oof_path(artifacts, "x").parent
    names = sorted(p.stem for p in folder.glob("*.parquet"))
    return names if include_stack else [n for n in names if not n.startswith(STACK_PREFIX)]


def _read(path: os.PathLike[str], columns: tuple[str, ...]) -> pl.DataFrame:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: prediction file not found")
    df = pl.read_parquet(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (has {df.columns})")
    ids = df.get_column("isic_id")
    dup = ids.filter(ids.is_duplicated())
    if dup.len():
        raise DataError(f"{path}: duplicated isic_id, e.g. {dup[0]!r}")
    pred = df.get_column("pred").cast(pl.Float64).fill_null(np.nan).to_numpy()
    if not np.isfinite(pred).all():
        bad = int(np.argmax(~np.isfinite(pred)))
        raise DataError(f"{path}: column 'pred' is NaN/infinite, e.g. for {ids[bad]!r}")
    return df


def _aligned(path: os.PathLike[str], df: pl.DataFrame, ids: pl.Series, what: str) -> pl.DataFrame:
    """``df`` joined onto ``ids`` in their order; a DataError when the id sets differ."""
    if df.height != ids.len():
        raise DataError(f"{path}: {df.height} rows, expected one per {what} row ({ids.len()})")
    out = pl.DataFrame({"isic_id": ids}).join(df, on="isic_id", how="left",
                                              maintain_order="left")
    lost = out.filter(pl.col("pred").is_null()).get_column("isic_id")
    if lost.len():
        raise DataError(f"{path}: no prediction for {lost.len()} {what} id(s), e.g. {lost[0]!r}")
    return out


def load_oof(artifacts: str | os.PathLike[str], name: str, folds: pl.DataFrame) -> np.ndarray:
    """OOF scores of ``name`` in ``folds`` row order; same ids and same fold, or a DataError."""
    path = oof_path(artifacts, name)
    out = _aligned(path, _read(path, ("isic_id", "fold", "pred")), folds.get_column("isic_id"),
                   "folds.parquet")
    differ = out.get_column("fold").cast(pl.Int64) != folds.get_column("fold").cast(pl.Int64)
    if differ.any():
        example = out.filter(differ).get_column("isic_id")[0]
        raise DataError(f"{path}: {int(differ.sum())} row(s) have another fold than "
                        f"folds.parquet, e.g. {example!r}; rerun this model on the current folds")
    return out.get_column("pred").to_numpy()


def load_test(artifacts: str | os.PathLike[str], name: str, ids: pl.Series) -> np.ndarray:
    """Test scores of ``name`` in ``ids`` order; every test id must be present exactly once."""
    path = test_pred_path(artifacts, name)
    return _aligned(path, _read(path, ("isic_id", "pred")), ids, "test").get_column(
        "pred").to_numpy()


def score_summary(y: np.ndarray, pred: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    """Pooled OOF pAUC/AUC and the per-fold pAUC/AUC with their mean and std."""
    fold_pauc: dict[int, float | None] = {}
    fold_auc: dict[int, float | None] = {}
    for k in sorted(int(v) for v in np.unique(fold)):
        m = fold == k
        single = y[m].min() == y[m].max()
        fold_pauc[k] = None if single else pauc(y[m], pred[m])
        fold_auc[k] = None if single else roc_auc(y[m], pred[m])
    fp = np.array([v for v in fold_pauc.values() if v is not None])
    fa = np.array([v for v in fold_auc.values() if v is not None])
    return {"oof_pauc": pauc(y, pred), "oof_auc": roc_auc(y, pred),
            "fold_pauc": fold_pauc, "fold_auc": fold_auc,
            "fold_pauc_mean": float(fp.mean()), "fold_pauc_std": float(fp.std()),
            "fold_auc_mean": float(fa.mean()), "fold_auc_std": float(fa.std())}
