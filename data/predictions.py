"""The one reader of prediction files (``oof/<name>.parquet``: isic_id, fold, pred; ``test/``:
isic_id, pred), for every stage that consumes another's scores (features, fusion, stacking,
calibration, the report): by path, or by run name under ``artifacts/`` (:func:`read_run_oof`).

Validation is the same everywhere: the file exists (else a message saying which stage to run),
has its columns, no duplicated ``isic_id``, finite scores; aligned onto the consumer's rows it
covers every one of them; and an OOF file carries exactly the fold assignment of the folds the
consumer uses. An OOF score made on other folds would have seen the consumer's validation rows
in training, which inflates CV silently; the error names both fold hashes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from isicstack.data.io import DataError
from isicstack.data.layout import IMAGE_PART_SUFFIX, SOLO_SUFFIX, oof_path, test_pred_path
from isicstack.data.provenance import fold_hash

STACK_PREFIX = "stack"  # level-2 outputs: oof/stack*.parquet
Kind = Literal["oof", "test"]
COLUMNS: dict[str, tuple[str, ...]] = {"oof": ("isic_id", "fold", "pred"),
                                       "test": ("isic_id", "pred")}


def read_predictions(path: str | os.PathLike[str], kind: Kind, hint: str = "") -> pl.DataFrame:
    """A validated prediction file: ``isic_id`` (String), ``fold`` (Int64, OOF), ``pred``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {kind} prediction file not found"
                                + (f"; {hint}" if hint else ""))
    df = pl.read_parquet(path)
    missing = [c for c in COLUMNS[kind] if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (has {df.columns})")
    casts = [pl.col("isic_id").cast(pl.String), pl.col("pred").cast(pl.Float64)]
    if kind == "oof":
        casts.insert(1, pl.col("fold").cast(pl.Int64))
    df = df.select(casts)
    dup = df.get_column("isic_id").filter(df.get_column("isic_id").is_duplicated())
    if dup.len():
        raise DataError(f"{path}: {dup.n_unique()} isic_id(s) appear more than once, "
                        f"e.g. {dup[0]!r}")
    pred = df.get_column("pred").fill_null(np.nan).to_numpy()
    if not np.isfinite(pred).all():
        bad = df.get_column("isic_id")[int(np.argmax(~np.isfinite(pred)))]
        raise DataError(f"{path}: column 'pred' is null, NaN or infinite, e.g. for {bad!r}")
    return df


def align(df: pl.DataFrame, ids: pl.Series, path: str | os.PathLike[str], what: str,
          exact: bool = False) -> pl.DataFrame:
    """``df``'s rows in the order of ``ids``; every id must have one (``exact``: and no more)."""
    if exact and df.height != ids.len():
        raise DataError(f"{path}: {df.height} rows, expected one per {what} row ({ids.len()})")
    out = pl.DataFrame({"isic_id": ids.cast(pl.String)}).join(
        df, on="isic_id", how="left", maintain_order="left")
    lost = out.filter(pl.col("pred").is_null()).get_column("isic_id")
    if lost.len():
        raise DataError(f"{path}: no prediction for {lost.len()} of {ids.len()} {what} "
                        f"row(s), e.g. {lost[0]!r}; rerun that stage on the same data")
    return out


def check_folds(aligned: pl.DataFrame, folds: pl.DataFrame, path: str | os.PathLike[str]
                ) -> None:
    """``aligned`` (an OOF file aligned onto ``folds``' rows) has the same fold on every row."""
    differ = aligned.get_column("fold") != folds.get_column("fold").cast(pl.Int64)
    if differ.any():
        example = aligned.filter(differ).get_column("isic_id")[0]
        raise DataError(
            f"{path}: made on other folds than the ones in use ({int(differ.sum())} row(s) "
            f"differ, e.g. {example!r}; fold hash {fold_hash(aligned)} vs "
            f"{fold_hash(folds)}); its scores saw those rows in training. Rerun that stage "
            "on the current folds.parquet")


def load_oof(path: str | os.PathLike[str], folds: pl.DataFrame, hint: str = "",
             exact: bool = True) -> np.ndarray:
    """OOF scores in ``folds`` row order (``isic_id``, ``fold``), fold-checked."""
    out = align(read_predictions(path, "oof", hint), folds.get_column("isic_id"), path,
                "folds.parquet", exact)
    check_folds(out, folds, path)
    return out.get_column("pred").to_numpy()


def load_test(path: str | os.PathLike[str], ids: pl.Series, hint: str = "",
              exact: bool = False) -> np.ndarray:
    """Test scores in ``ids`` order."""
    return align(read_predictions(path, "test", hint), ids, path, "test", exact
                 ).get_column("pred").to_numpy()


def discover(artifacts: str | os.PathLike[str], include_stack: bool = False,
             include_parts: bool = False, include_solo: bool = False) -> list[str]:
    """Sorted names of the OOF files in ``artifacts/oof``. Left out by default: level-2 outputs,
    a fused image run's image term alone (``*_image_part``), a second-pass GBDT feature that
    scores only what the table leaves unexplained (as a stack input it lowered the stack's
    pAUC on the synthetic default), and the few-lesions GBDTs (``*_solo``), a model for other
    requests, not an input of this one. Name one in the stack's ``inputs`` to use it anyway."""
    folder = oof_path(artifacts, "x").parent
    names = sorted(p.stem for p in folder.glob("*.parquet"))
    return [n for n in names if (include_stack or not n.startswith(STACK_PREFIX))
            and (include_parts or not n.endswith(IMAGE_PART_SUFFIX))
            and (include_solo or not n.endswith(SOLO_SUFFIX))]


def read_run_oof(artifacts: str | os.PathLike[str], name: str, folds: pl.DataFrame) -> np.ndarray:
    """OOF scores of run ``name`` in ``folds`` row order; same ids and same fold, or a
    DataError (an OOF file made on other folds would leak training rows into its reader)."""
    return load_oof(oof_path(artifacts, name), folds, f"run the stage that writes {name!r}")


def read_run_test(artifacts: str | os.PathLike[str], name: str, ids: pl.Series) -> np.ndarray:
    """Test scores of run ``name`` in ``ids`` order; every test id present exactly once."""
    return load_test(test_pred_path(artifacts, name), ids,
                     f"run the stage that writes {name!r}", exact=True)
