"""Patient-grouped, target-stratified folds, written once and shared by every stage.

One fold file keeps image OOF predictions fed to the GBDT (and the stacker) strictly
out-of-fold; patient leakage across folds is the classic way to inflate ISIC CV.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from isicstack.data.config import FoldsConfig
from isicstack.data.io import DataError, load_metadata, write_json, write_parquet
from isicstack.data.layout import TRAIN_META, folds_path, resolve_data_dir

log = logging.getLogger(__name__)


def make_folds(meta: pl.DataFrame, n_folds: int = 5, seed: int = 42) -> pl.DataFrame:
    """Assign a fold to every row: StratifiedGroupKFold on ``target`` grouped by ``patient_id``."""
    for col in ("isic_id", "patient_id", "target"):
        if col not in meta.columns:
            raise DataError(f"make_folds: column {col!r} missing")
    n_patients = meta.get_column("patient_id").n_unique()
    if n_patients < n_folds:
        raise DataError(f"make_folds: {n_patients} patients cannot fill {n_folds} folds")
    y = meta.get_column("target").to_numpy()
    groups = meta.get_column("patient_id").to_numpy()
    fold = np.full(meta.height, -1, dtype=np.int16)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(meta.height), y, groups)):
        fold[valid] = k
    out = meta.select("isic_id", "patient_id", "target").with_columns(
        fold=pl.Series(fold, dtype=pl.Int16)
    )
    pos_folds = set(out.filter(pl.col("target") == 1).get_column("fold").to_list())
    empty = [k for k in range(n_folds) if k not in pos_folds]
    if empty:
        log.warning("folds %s have no positive row (too few positive patients)", empty)
    return out


def _ids_digest(ids: pl.Series) -> str:
    return hashlib.sha256("\n".join(ids.sort().to_list()).encode()).hexdigest()[:16]


def ensure_folds(cfg: FoldsConfig) -> Path:
    """Write ``folds.parquet`` unless an identical assignment exists; refuse a silent change.

    Existing OOF files depend on the folds, so different data or K/seed with the same
    ``artifacts`` folder is an error unless ``force=true``.
    """
    data_dir = resolve_data_dir(cfg.data_dir, cfg.profile)
    meta = load_metadata(data_dir / TRAIN_META, "train")
    path = folds_path(cfg.artifacts)
    info_path = path.with_suffix(".json")
    info = {"n_folds": cfg.n_folds, "seed": cfg.seed, "rows": meta.height,
            "ids_sha256": _ids_digest(meta.get_column("isic_id")), "data_dir": str(data_dir)}
    if path.is_file() and info_path.is_file() and not cfg.force:
        old = json.loads(info_path.read_text())
        same = all(old.get(k) == info[k] for k in ("n_folds", "seed", "ids_sha256"))
        if same:
            log.info("folds: reusing %s", path)
            return path
        raise DataError(
            f"{path}: existing folds were made for {old.get('data_dir')} "
            f"(n_folds={old.get('n_folds')}, seed={old.get('seed')}); now {data_dir} "
            f"(n_folds={cfg.n_folds}, seed={cfg.seed}). Use another ARTIFACTS folder, "
            "`make clean`, or force=true (invalidates existing OOF files)."
        )
    write_parquet(make_folds(meta, cfg.n_folds, cfg.seed), path)
    write_json(info, info_path)
    log.info("folds: wrote %s (%d rows, %d folds)", path, meta.height, cfg.n_folds)
    return path


def read_folds(artifacts: str | os.PathLike[str]) -> pl.DataFrame:
    """The shared fold assignment (``isic_id, patient_id, target, fold``)."""
    path = folds_path(artifacts)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no folds yet; run `isic folds` (or `make folds`) first")
    return pl.read_parquet(path)


def run(cfg: FoldsConfig) -> Path:
    """CLI entry (`isic folds`)."""
    return ensure_folds(cfg)


def folds_data_dir(data_dir: str, artifacts: str | os.PathLike[str], profile: str) -> Path:
    """``auto`` means the data the folds were made from (``folds.json``), when it still exists:
    what a reader of OOF scores (report, subgroups) must join them to."""
    if data_dir == "auto":
        info = folds_path(artifacts).with_suffix(".json")
        made_from = json.loads(info.read_text())["data_dir"] if info.is_file() else None
        if made_from and Path(made_from).is_dir():
            return Path(made_from)
    return resolve_data_dir(data_dir, profile)
