"""Validated metadata loading and atomic artifact writes.

Every error names the file, the column and an example value, because the usual failure is a
user pointing ``DATA_DIR`` at the wrong or a hand-edited file. Every write goes to a temporary
file in the target folder and is renamed into place, so an interrupted run never leaves a
half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from isicstack.data.schema import BY_NAME, Split, columns_for

if TYPE_CHECKING:  # a type only: writing JSON or parquet does not load matplotlib
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

NULL_VALUES = ["", "NA", "nan", "NaN"]
_UMASK = os.umask(0)
os.umask(_UMASK)


class DataError(ValueError):
    """Input data that does not follow the ISIC 2024 contract."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual mode
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)
    return Path(path)


def write_csv(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` as CSV atomically."""
    with atomic_path(path) as tmp:
        df.write_csv(tmp)
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def save_png(fig: Figure, path: Path, dpi: int) -> str:
    """Write ``fig`` to ``path`` (temp file, then rename) -> its file name. Figures are built
    as ``matplotlib.figure.Figure`` (no pyplot): no backend or display to choose, nothing
    left open."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path.name


def read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """The JSON object in ``path``; a FileNotFoundError saying ``missing`` (what to do) when
    there is no file, a ValueError naming the file when it is not a JSON object."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a JSON object")
    return doc


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def _first_bad(raw: pl.Series, cast: pl.Series) -> tuple[int, str]:
    """Row number and value of the first entry that was present but failed to cast."""
    bad = raw.is_not_null() & cast.is_null()
    idx = int(bad.arg_max())  # type: ignore[arg-type]
    return idx, str(raw[idx])


def _warn_v1_std_lext(df: pl.DataFrame, path: Path) -> None:
    """Warn on the first release's bug: ``tbp_lv_stdLExt`` holding ``tbp_lv_Lext`` on every row.

    The values are kept (the true ones are lost), but features built from them are wrong, so
    the user hears about it once, with the file and the fix.
    """
    std, lext = df.get_column("tbp_lv_stdLExt"), df.get_column("tbp_lv_Lext")
    both = std.is_not_null() & lext.is_not_null()
    if both.sum() and (std.filter(both) == lext.filter(both)).all():
        log.warning("%s: tbp_lv_stdLExt equals tbp_lv_Lext on every row: this is the first "
                    "release's bug (v1 test-metadata.csv); download the current file from "
                    "Kaggle. Features using tbp_lv_stdLExt are wrong for these rows.", path)


def load_metadata(path: str | os.PathLike[str], split: Split) -> pl.DataFrame:
    """Read and validate a Kaggle ``train-metadata.csv`` or ``test-metadata.csv``.

    Returns a frame with the required columns in Kaggle order and their schema dtypes, followed
    by any extra columns (kept as strings and reported once).
    """
    path = Path(path)
    required = columns_for(split)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (expected a header of {len(required)} columns)")
    try:
        raw = pl.read_csv(path, infer_schema=False, null_values=NULL_VALUES)
    except pl.exceptions.NoDataError as err:
        raise DataError(f"{path}: file is empty ({err})") from err
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise DataError(
            f"{path}: missing required column(s) for split={split!r}: {', '.join(missing)}"
        )
    if raw.height == 0:
        raise DataError(f"{path}: file has a header but no rows")
    extra = [c for c in raw.columns if c not in required]
    if extra:
        log.warning("%s: keeping %d unknown column(s): %s", path, len(extra), ", ".join(extra))

    out = []
    for name in required:
        dtype = BY_NAME[name].dtype
        col = raw.get_column(name)
        if dtype == pl.String:
            out.append(col)
            continue
        cast = col.cast(dtype, strict=False)
        if (cast.null_count()) != col.null_count():
            row, value = _first_bad(col, cast)
            raise DataError(
                f"{path}: column {name!r} row {row + 2}: value {value!r} is not {dtype}"
            )
        out.append(cast)
    df = pl.DataFrame(out).hstack([raw.get_column(c) for c in extra])

    ids = df.get_column("isic_id")
    if ids.null_count():
        raise DataError(f"{path}: column 'isic_id' has {ids.null_count()} empty value(s)")
    dup = ids.filter(ids.is_duplicated())
    if dup.len():
        raise DataError(
            f"{path}: column 'isic_id' has {dup.n_unique()} duplicated id(s), e.g. {dup[0]!r}"
        )
    if df.get_column("patient_id").null_count():
        raise DataError(f"{path}: column 'patient_id' has empty values")
    _warn_v1_std_lext(df, path)
    if split == "train":
        target = df.get_column("target")
        bad = target.filter(target.is_null() | ~target.is_in([0, 1]))
        if bad.len() or target.null_count():
            example = bad[0] if bad.len() else None
            raise DataError(f"{path}: column 'target' must be 0 or 1, found {example!r}")
    return df
