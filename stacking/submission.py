"""A Kaggle ``submission.csv`` that is checked completely before a single byte is written.

A submission with a missing, duplicated or NaN row is rejected by Kaggle only after the whole
notebook has run (hours on the hidden test set), so every check happens here, first, and the file
is written atomically: either a valid file appears or nothing does. Independent of the stack run
so offline inference calls the same function.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import polars as pl

from isicstack.data.io import DataError, write_csv

log = logging.getLogger(__name__)

HEADER = ("isic_id", "target")
SCORE_COLUMNS = ("target", "pred")  # accepted names of the score column in ``preds``


def _header(path: Path) -> list[str]:
    """The column names of a CSV file's first line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sample submission not found")
    with path.open(encoding="utf-8") as fh:
        first = fh.readline().strip().lstrip("\ufeff")
    return [c.strip() for c in first.split(",")] if first else []


def _test_ids(path: Path) -> pl.Series:
    """The test ``isic_id`` column in file order (unique, non-empty)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: test metadata not found")
    try:
        ids = pl.read_csv(path, columns=["isic_id"], infer_schema=False).get_column("isic_id")
    except pl.exceptions.ColumnNotFoundError as err:
        raise DataError(f"{path}: no 'isic_id' column") from err
    if ids.null_count() or ids.len() == 0:
        raise DataError(f"{path}: 'isic_id' is empty or has empty values")
    dup = ids.filter(ids.is_duplicated())
    if dup.len():
        raise DataError(f"{path}: duplicated isic_id, e.g. {dup[0]!r}")
    return ids


def _score_column(preds: pl.DataFrame) -> str:
    if "isic_id" not in preds.columns:
        raise DataError(f"predictions have no 'isic_id' column (columns: {preds.columns})")
    for name in SCORE_COLUMNS:
        if name in preds.columns:
            return name
    raise DataError(f"predictions need a score column named one of {SCORE_COLUMNS}; "
                    f"got {preds.columns}")


def validate_submission(preds: pl.DataFrame, test_ids: pl.Series) -> pl.DataFrame:
    """``isic_id, target`` in test order, or a DataError naming the problem and an example id."""
    col = _score_column(preds)
    ids = preds.get_column("isic_id").cast(pl.String)
    if ids.null_count():
        raise DataError(f"predictions: {ids.null_count()} row(s) have an empty isic_id")
    dup = ids.filter(ids.is_duplicated())
    if dup.len():
        raise DataError(f"predictions: {dup.n_unique()} duplicated isic_id(s), e.g. {dup[0]!r}")
    unknown = ids.filter(~ids.is_in(test_ids.implode()))
    if unknown.len():
        raise DataError(f"predictions: {unknown.len()} isic_id(s) not in the test metadata, "
                        f"e.g. {unknown[0]!r}")
    missing = test_ids.filter(~test_ids.is_in(ids.implode()))
    if missing.len():
        raise DataError(f"predictions: {missing.len()} test isic_id(s) have no prediction, "
                        f"e.g. {missing[0]!r}")
    try:
        score = preds.get_column(col).cast(pl.Float64)
    except pl.exceptions.InvalidOperationError as err:
        raise DataError(f"predictions: column {col!r} is not numeric") from err
    frame = pl.DataFrame({"isic_id": ids, "target": score})
    out = pl.DataFrame({"isic_id": test_ids}).join(frame, on="isic_id", how="left",
                                                   maintain_order="left")
    values = out.get_column("target").fill_null(np.nan).to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"predictions: {int(bad.sum())} non-finite value(s), "
                        f"e.g. {values[i]} for {out['isic_id'][i]!r}")
    bad = (values < 0.0) | (values > 1.0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"predictions: {int(bad.sum())} value(s) outside [0, 1], "
                        f"e.g. {values[i]} for {out['isic_id'][i]!r}")
    return out


def _check_sample_ids(sample: Path, ids: pl.Series, test_meta: Path) -> None:
    """The sample submission lists the test file's ids: else the two come from different sets."""
    sample_ids = pl.read_csv(sample, columns=["isic_id"], infer_schema=False)["isic_id"]
    extra = sample_ids.filter(~sample_ids.is_in(ids.implode()))
    missing = ids.filter(~ids.is_in(sample_ids.implode()))
    if extra.len() or missing.len():
        example = extra[0] if extra.len() else missing[0]
        raise DataError(f"{sample}: its isic_ids differ from {test_meta} ({extra.len()} not in "
                        f"the test file, {missing.len()} missing, e.g. {example!r}); the two "
                        "files come from different test sets")


def write_submission(preds: pl.DataFrame, test_meta_path: str | os.PathLike[str],
                     sample_path: str | os.PathLike[str] | None,
                     out_path: str | os.PathLike[str]) -> Path:
    """Validate ``preds`` (``isic_id`` + ``target`` or ``pred``) and write ``out_path``.

    The rows are exactly the ids of ``test_meta_path`` in its order, the header is that of
    ``sample_path`` (``isic_id,target``; None: that header without a sample file). Any failed
    check raises a DataError and writes nothing.
    """
    if sample_path is not None:
        header = _header(Path(sample_path))
        if tuple(header) != HEADER:
            raise DataError(f"{sample_path}: header {','.join(header)!r} is not the expected "
                            f"{','.join(HEADER)!r}")
    ids = _test_ids(Path(test_meta_path))
    if sample_path is not None:
        _check_sample_ids(Path(sample_path), ids, Path(test_meta_path))
    out = validate_submission(preds, ids)
    path = write_csv(out.rename(dict(zip(out.columns, HEADER, strict=True))), out_path)
    log.info("submission: wrote %s (%d rows, score range %.4g-%.4g)", path, out.height,
             out["target"].min(), out["target"].max())
    return path
