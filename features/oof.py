"""Another stage's predictions as features: out-of-fold scores for train, test scores for test.

The image models' OOF scores fed to the GBDT gave the winning solutions their last ~0.005
pAUC. Train rows must get strictly out-of-fold scores (written by the stage with the shared
fold file) and test rows the stage's test predictions, both keyed by ``isic_id``. The score is
also divided by the patient's mean score, since a lesion that looks worse than the patient's
other lesions is what matters.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from isicstack.data import predictions
from isicstack.data.folds import read_folds
from isicstack.data.io import DataError
from isicstack.data.layout import folds_path, oof_path, test_pred_path
from isicstack.features.lesion import EPS, finite

_BAD = re.compile(r"[^A-Za-z0-9_]")


def sanitize(name: str) -> str:
    """A LightGBM-safe feature name: anything outside [A-Za-z0-9_] becomes ``_``."""
    return _BAD.sub("_", name)


def oof_names(name: str, rank: bool) -> list[str]:
    """Feature names produced for stage ``name``."""
    base = f"{sanitize(name)}_oof"
    return [base, f"{base}_pnorm"] + ([f"{base}_rank"] if rank else [])


def _hint(name: str) -> str:
    return (f"run the {name!r} stage (it writes it) before building features with "
            f"oof_names, or drop {name!r} from oof_names")


def read_predictions(path: Path, name: str, split: str) -> pl.DataFrame:
    """``isic_id, pred`` of stage ``name`` (validated by the project's one prediction reader)."""
    kind = "oof" if split == "train" else "test"
    return predictions.read_predictions(path, kind, _hint(name)).select("isic_id", "pred")


def attach(frame: pl.DataFrame, preds: pl.DataFrame, path: Path, name: str) -> pl.Series:
    """The prediction of each row of ``frame`` (isic_id, patient_id), in row order."""
    return predictions.align(preds, frame.get_column("isic_id"), path, name).get_column("pred")


def train_scores(train: pl.DataFrame, name: str, artifacts: str | Path) -> pl.Series:
    """Strictly out-of-fold scores of ``name`` for ``train``'s rows, made on the folds of
    ``artifacts/folds.parquet`` (checked row by row, see data/predictions.py)."""
    path = oof_path(artifacts, name)
    preds = predictions.read_predictions(path, "oof", _hint(name))
    folds = train.select("isic_id").join(read_folds(artifacts).select("isic_id", "fold"),
                                         on="isic_id", how="left", maintain_order="left")
    if folds.get_column("fold").null_count():
        miss = folds.filter(pl.col("fold").is_null()).get_column("isic_id")[0]
        raise DataError(f"{folds_path(artifacts)}: train row {miss!r} has no fold; "
                        "the folds were made for other data")
    aligned = predictions.align(preds, folds.get_column("isic_id"), path, name)
    predictions.check_folds(aligned, folds, path)
    return aligned.get_column("pred")


def oof_block(frame: pl.DataFrame, pred: pl.Series, name: str, rank: bool,
              noise_sd: float = 0.0, seed: int = 0) -> pl.DataFrame:
    """``<name>_oof``, ``<name>_oof_pnorm`` (score / patient mean) and ``<name>_oof_rank``
    (within-patient percentile rank), Float32.

    ``noise_sd`` > 0 adds seeded Gaussian noise to ``<name>_oof`` only (train side): it makes
    the GBDT trust the optimistic OOF score less. The patient ratio and rank use the clean score.
    """
    out_names = oof_names(name, rank)
    pid = pl.col("patient_id")
    p = pl.col("__pred")
    exprs = [p.alias(out_names[0]), (p / (p.mean().over(pid) + EPS)).alias(out_names[1])]
    if rank:
        exprs.append((p.rank("average").over(pid) / pl.len().over(pid)).alias(out_names[2]))
    df = frame.select("patient_id").with_columns(pred.alias("__pred")).select(
        finite(e.cast(pl.Float32)).alias(n) for e, n in zip(exprs, out_names, strict=True)
    )
    if noise_sd > 0:
        rng = np.random.default_rng(seed)
        noise = rng.normal(0.0, noise_sd, df.height).astype(np.float32)
        df = df.with_columns(pl.col(out_names[0]) + pl.Series(noise))
    return df


def oof_features(train: pl.DataFrame, test: pl.DataFrame | None, names: list[str],
                 artifacts: str | Path, rank: bool, noise_sd: float, seed: int
                 ) -> tuple[pl.DataFrame, pl.DataFrame | None, list[str]]:
    """Build the oof blocks of every stage in ``names`` for both splits."""
    tr_blocks, te_blocks, out = [], [], []
    for i, name in enumerate(names):
        pred = train_scores(train, name, artifacts)
        tr_blocks.append(oof_block(train, pred, name, rank, noise_sd, seed + 7919 * i))
        if test is not None:
            tpath = test_pred_path(artifacts, name)
            tpred = attach(test, read_predictions(tpath, name, "test"), tpath, name)
            te_blocks.append(oof_block(test, tpred, name, rank))
        out += oof_names(name, rank)
    tr = pl.concat(tr_blocks, how="horizontal")
    te = pl.concat(te_blocks, how="horizontal") if test is not None else None
    return tr, te, out
