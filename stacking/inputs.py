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

from isicstack.data import predictions
from isicstack.data.layout import oof_path, test_pred_path
from isicstack.data.metric import pauc, roc_auc

log = logging.getLogger(__name__)

STACK_PREFIX = "stack"


def discover(artifacts: str | os.PathLike[str], include_stack: bool = False) -> list[str]:
    """Sorted names of the OOF files in ``artifacts/oof`` (level-2 outputs left out by default)."""
    folder = oof_path(artifacts, "x").parent
    names = sorted(p.stem for p in folder.glob("*.parquet"))
    return names if include_stack else [n for n in names if not n.startswith(STACK_PREFIX)]


def load_oof(artifacts: str | os.PathLike[str], name: str, folds: pl.DataFrame) -> np.ndarray:
    """OOF scores of ``name`` in ``folds`` row order; same ids and same fold, or a DataError."""
    return predictions.load_oof(oof_path(artifacts, name), folds,
                                f"run the stage that writes {name!r}")


def load_test(artifacts: str | os.PathLike[str], name: str, ids: pl.Series) -> np.ndarray:
    """Test scores of ``name`` in ``ids`` order; every test id must be present exactly once."""
    return predictions.load_test(test_pred_path(artifacts, name), ids,
                                 f"run the stage that writes {name!r}", exact=True)


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
