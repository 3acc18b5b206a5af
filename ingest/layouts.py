"""Label CSVs of other ISIC data sets, mapped onto ``isic_id, target, patient_id`` (+ metadata).

- ``isic2019``: ``ISIC_2019_Training_GroundTruth.csv`` (``image`` + one-hot MEL, NV, BCC, ...):
  target = MEL, diagnosis = the one-hot column set. Its optional metadata file
  (``ISIC_2019_Training_Metadata.csv``) adds age, sex, site and ``lesion_id``; there are no
  patient ids, so ``patient_id`` is the ``lesion_id`` where known (images of one lesion then
  stay in one fold) and empty otherwise.
- ``isic2020``: SIIM-ISIC ``train.csv`` (``image_name, patient_id, ..., target``): as is.
- ``generic``: any CSV with an id and a 0/1 target column (names configurable), patient optional.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from isicstack.data.io import NULL_VALUES, DataError

ISIC2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
OUTPUT_COLUMNS = ("isic_id", "target", "patient_id")
META_COLUMNS = ("diagnosis", "age_approx", "sex", "anatom_site_general", "lesion_id")


def read_csv(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A CSV read as strings (no type guessing); clear errors for a missing or empty file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found")
    try:
        df = pl.read_csv(path, infer_schema=False, null_values=NULL_VALUES)
    except pl.exceptions.NoDataError as err:
        raise DataError(f"{path}: file is empty ({err})") from err
    if df.height == 0:
        raise DataError(f"{path}: file has a header but no rows")
    return df


def require(df: pl.DataFrame, path: Path, columns: tuple[str, ...], layout: str) -> None:
    """A DataError naming the file, the missing columns and the layout that needs them."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} missing for layout={layout!r} "
                        f"(has {df.columns[:12]})")


def binary_target(df: pl.DataFrame, column: str, path: Path, shown: str = "") -> pl.Expr:
    """``column`` as Int8 0/1 (``1``, ``1.0`` accepted); anything else names the id and value.

    ``shown`` is the column's name in the user's file when it was renamed.
    """
    value = pl.col(column).str.strip_chars().cast(pl.Float64, strict=False)
    bad = df.filter(value.is_null() | ~value.is_in([0.0, 1.0]))
    if bad.height:
        row = bad.row(0, named=True)
        raise DataError(f"{path}: column {shown or column!r} must be 0 or 1; id "
                        f"{row['isic_id']!r} has {row[column]!r} ({bad.height} such row(s))")
    return value.cast(pl.Int8).alias("target")


def _finish(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Output column order, empty strings as nulls, unique non-empty ids."""
    df = df.with_columns(pl.col(pl.String).str.strip_chars().replace("", None))
    ids = df["isic_id"]
    if ids.null_count():
        raise DataError(f"{path}: {ids.null_count()} row(s) have an empty image id")
    dup = ids.filter(ids.is_duplicated())
    if dup.len():
        raise DataError(f"{path}: image id {dup[0]!r} appears more than once")
    extra = [c for c in META_COLUMNS if c in df.columns]
    return df.select(*OUTPUT_COLUMNS, *extra)


def isic2019(labels: Path, metadata: Path | None = None) -> pl.DataFrame:
    """ISIC 2019 ground truth (+ optional metadata): target = MEL."""
    df = read_csv(labels)
    require(df, labels, ("image", "MEL"), "isic2019")
    df = df.rename({"image": "isic_id"})
    classes = [c for c in ISIC2019_CLASSES if c in df.columns]
    onehot = [pl.when(pl.col(c).cast(pl.Float64, strict=False) == 1).then(pl.lit(c))
              for c in classes]
    df = df.with_columns(binary_target(df, "MEL", labels),
                         pl.coalesce(onehot).alias("diagnosis"))
    df = df.with_columns(patient_id=pl.lit(None, dtype=pl.String))
    if metadata is not None:
        meta = read_csv(metadata)
        require(meta, metadata, ("image",), "isic2019 metadata")
        keep = [c for c in ("age_approx", "sex", "anatom_site_general", "lesion_id")
                if c in meta.columns]
        df = df.join(meta.select(pl.col("image").alias("isic_id"), *keep), on="isic_id",
                     how="left", maintain_order="left")
        if "lesion_id" in df.columns:
            df = df.with_columns(patient_id=pl.col("lesion_id"))
    return _finish(df, labels)


def isic2020(labels: Path) -> pl.DataFrame:
    """SIIM-ISIC 2020 ``train.csv``: target as is, patient ids known."""
    df = read_csv(labels)
    require(df, labels, ("image_name", "target"), "isic2020")
    df = df.rename({"image_name": "isic_id"})
    if "anatom_site_general_challenge" in df.columns:
        df = df.rename({"anatom_site_general_challenge": "anatom_site_general"})
    if "patient_id" not in df.columns:
        df = df.with_columns(patient_id=pl.lit(None, dtype=pl.String))
    return _finish(df.with_columns(binary_target(df, "target", labels)), labels)


def generic(labels: Path, id_column: str, target_column: str,
            patient_column: str) -> pl.DataFrame:
    """Any CSV with an id and a 0/1 target column; the patient column is used when present."""
    df = read_csv(labels)
    require(df, labels, (id_column, target_column), "generic")
    out = df.select(
        pl.col(id_column).alias("isic_id"), pl.col(target_column).alias("target"),
        (pl.col(patient_column) if patient_column in df.columns
         else pl.lit(None, dtype=pl.String)).alias("patient_id"),
        *(pl.col(c) for c in META_COLUMNS if c in df.columns and c not in
          (id_column, target_column, patient_column)))
    return _finish(out.with_columns(binary_target(out, "target", labels, target_column)), labels)


def read_labels(layout: str, labels: Path, metadata: Path | None = None,
                id_column: str = "isic_id", target_column: str = "target",
                patient_column: str = "patient_id") -> pl.DataFrame:
    """The labels table of ``layout``: ``isic_id, target, patient_id`` (+ known metadata)."""
    if layout == "isic2019":
        return isic2019(labels, metadata)
    if metadata is not None:
        raise DataError(f"metadata={metadata}: a separate metadata file is only read for "
                        "layout=isic2019")
    if layout == "isic2020":
        return isic2020(labels)
    if layout == "generic":
        return generic(labels, id_column, target_column, patient_column)
    raise DataError(f"unknown layout {layout!r}; one of isic2019, isic2020, generic")
