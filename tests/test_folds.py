"""Folds: patient-grouped, every positive assigned, written once, never silently changed."""

from pathlib import Path

import polars as pl
import pytest

from isicstack.data.config import FoldsConfig
from isicstack.data.folds import ensure_folds, make_folds, read_folds
from isicstack.data.io import DataError, load_metadata


def test_mini_folds(mini_isic: Path, mini_artifacts: Path):
    folds = read_folds(mini_artifacts)
    meta = load_metadata(mini_isic / "train-metadata.csv", "train")
    assert folds.height == meta.height
    assert set(folds["isic_id"]) == set(meta["isic_id"])
    assert folds["fold"].min() == 0 and folds["fold"].max() == 2
    per_patient = folds.group_by("patient_id").agg(pl.col("fold").n_unique())
    assert per_patient["fold"].max() == 1, "a patient is in two folds"
    pos = folds.filter(pl.col("target") == 1)
    assert pos.height == meta["target"].sum() and pos["fold"].n_unique() == 3


def test_make_folds_is_deterministic_and_seeded(mini_isic: Path):
    meta = load_metadata(mini_isic / "train-metadata.csv", "train")
    a, b = make_folds(meta, 5, 1), make_folds(meta, 5, 1)
    assert a.equals(b)
    assert not a.equals(make_folds(meta, 5, 2))
    with pytest.raises(DataError, match="patients"):
        make_folds(meta.head(3), 5, 0)


def test_written_once_and_change_refused(mini_isic: Path, tmp_path: Path):
    cfg = FoldsConfig(data_dir=str(mini_isic), artifacts=str(tmp_path), n_folds=3, seed=0)
    path = ensure_folds(cfg)
    mtime = path.stat().st_mtime_ns
    assert ensure_folds(cfg).stat().st_mtime_ns == mtime  # reused, not rewritten
    cfg.seed = 1
    with pytest.raises(DataError, match="force=true"):
        ensure_folds(cfg)
    cfg.force = True
    ensure_folds(cfg)
    assert path.stat().st_mtime_ns != mtime


def test_read_folds_missing(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="isic folds"):
        read_folds(tmp_path)
