"""What the image stage trains and predicts on: fold table, test rows and fusion features.

Fusion features come from the tabular stage's keyed artifacts: for train rows its OOF
prediction (made by a model that never saw the row), for test rows its test prediction. The
fold column of that OOF file must match ``folds.parquet``: a stale tabular run made with other
folds would leak validation labels into the image model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data import predictions
from isicstack.data.crops import CropStore
from isicstack.data.folds import make_folds
from isicstack.data.io import DataError, load_metadata, write_json, write_parquet
from isicstack.data.layout import oof_path, test_pred_path
from isicstack.vision.distributed import is_rank_zero

log = logging.getLogger(__name__)

TAB_COLS = ("tab_logit", "tab_patient_ratio")
FUSION_FILE = "fusion.json"  # in the run dir: tabular_name, columns, mean, std
EPS = 1e-6
CLIP = 8.0  # standardised ratios of one-lesion-dominated patients can be huge


@dataclass
class TrainInputs:
    """Rows to train/validate on: ``table`` has isic_id, patient_id, target, fold (+ TAB_COLS)."""

    table: pl.DataFrame
    images_path: Path
    tab_cols: tuple[str, ...] = ()
    test: pl.DataFrame | None = None  # test rows (isic_id, patient_id [+ TAB_COLS])
    test_images: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # what was read, by content

    def tab(self, table: pl.DataFrame | None = None) -> np.ndarray | None:
        """Fusion feature matrix (rows x len(tab_cols)) or None in image-only mode."""
        t = self.table if table is None else table
        return t.select(self.tab_cols).to_numpy().astype(np.float32) if self.tab_cols else None


def require_crops(ids: pl.Series, path: Path, what: str) -> None:
    """Fail with an example when rows have no crop (wrong DATA_DIR or truncated HDF5)."""
    keys = CropStore.ids(path)
    missing = ids.filter(~ids.is_in(keys))
    if missing.len():
        raise DataError(f"{path}: {missing.len()} {what} row(s) have no crop, e.g. {missing[0]!r}")


def image_only_folds(labels_path: Path, images_path: Path, artifacts: Path, n_folds: int,
                     seed: int) -> pl.DataFrame:
    """Patient-grouped stratified folds for a labels CSV + HDF5, cached in the artifacts folder.

    ``patient_id`` may be missing (column or values): such rows form their own group, so the
    split is at least lesion-disjoint. Rows without a crop are dropped with a warning.
    """
    labels = pl.read_csv(labels_path, infer_schema_length=0)
    for col in ("isic_id", "target"):
        if col not in labels.columns:
            raise DataError(f"{labels_path}: column {col!r} missing (need isic_id, target)")
    if "patient_id" not in labels.columns:
        labels = labels.with_columns(patient_id=pl.lit(None, dtype=pl.String))
    labels = labels.select(
        "isic_id",
        pl.when(pl.col("patient_id").is_null() | (pl.col("patient_id").str.strip_chars() == ""))
        .then(pl.col("isic_id")).otherwise(pl.col("patient_id")).alias("patient_id"),
        pl.col("target").cast(pl.Int8, strict=False),
    )
    if labels["target"].null_count() or not labels["target"].is_in([0, 1]).all():
        raise DataError(f"{labels_path}: column 'target' must be 0 or 1")
    keys = CropStore.ids(images_path)
    keep = labels["isic_id"].is_in(keys)
    if not keep.all():
        log.warning("%s: %d labelled row(s) have no crop in %s; dropped", labels_path,
                    int((~keep).sum()), images_path)
        labels = labels.filter(keep)
    digest = hashlib.sha256("\n".join(sorted(labels["isic_id"].to_list())).encode()).hexdigest()
    info = {"n_folds": n_folds, "seed": seed, "ids_sha256": digest[:16],
            "labels": str(labels_path)}
    path = artifacts / "folds_images.parquet"
    info_path = path.with_suffix(".json")
    if path.is_file() and info_path.is_file() and json.loads(info_path.read_text()) == info:
        return pl.read_parquet(path)
    folds = make_folds(labels, n_folds, seed)
    if not is_rank_zero():  # DDP: rank 0 wrote them before the other ranks started
        return folds
    write_parquet(folds, path)
    write_json(info, info_path)
    log.info("image-only folds: wrote %s (%d rows, %d folds)", path, folds.height, n_folds)
    return folds


def score_features(pred: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Raw fusion features: logit(pred) and pred / mean pred of the same patient."""
    p = np.clip(np.asarray(pred, dtype=np.float64), EPS, 1 - EPS)
    logit = np.log(p / (1 - p))
    df = pl.DataFrame({"patient": patient, "p": p})
    mean = df.select(pl.col("p").mean().over("patient")).to_series().to_numpy()
    return np.stack([logit, p / (mean + EPS)], axis=1)


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std, clipped to +-CLIP, as float32."""
    return np.clip((x - mean) / np.maximum(std, EPS), -CLIP, CLIP).astype(np.float32)


FUSION_HINT = ("run `isic train-tabular` first, set tabular_name, or set fusion=false for an "
               "image-only model")


def add_fusion(table: pl.DataFrame, test: pl.DataFrame | None, artifacts: str | os.PathLike[str],
               tabular_name: str) -> tuple[pl.DataFrame, pl.DataFrame | None, dict[str, list]]:
    """Join the tabular stage's scores as standardised TAB_COLS onto train (and test) rows.

    The OOF file must carry ``table``'s folds (checked row by row by the one prediction reader).
    Standardisation statistics come from the train OOF rows and are reused for test rows.
    """
    pred = predictions.load_oof(oof_path(artifacts, tabular_name), table, FUSION_HINT,
                                exact=False)
    raw = score_features(pred, table["patient_id"].to_numpy())
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    table = table.with_columns(
        [pl.Series(c, standardise(raw, mean, std)[:, j]) for j, c in enumerate(TAB_COLS)])
    if test is not None and test.height:
        tpred = predictions.load_test(test_pred_path(artifacts, tabular_name),
                                      test["isic_id"], FUSION_HINT)
        traw = score_features(tpred, test["patient_id"].to_numpy())
        test = test.with_columns(
            [pl.Series(c, standardise(traw, mean, std)[:, j]) for j, c in enumerate(TAB_COLS)])
    return table, test, {"mean": mean.tolist(), "std": std.tolist()}


def load_test_rows(data_dir: Path, test_meta: str,
                   test_images: str) -> tuple[pl.DataFrame, Path] | None:
    """Test ids of ``test-metadata.csv`` that have a crop in ``test-image.hdf5`` (else None)."""
    meta_path, img_path = data_dir / test_meta, data_dir / test_images
    if not (meta_path.is_file() and img_path.is_file()):
        log.warning("no test predictions: %s or %s not found", meta_path, img_path)
        return None
    meta = load_metadata(meta_path, "test").select("isic_id", "patient_id")
    keys = CropStore.ids(img_path)
    keep = meta["isic_id"].is_in(keys)
    if not keep.all():
        log.warning("%s: %d test row(s) without a crop are not predicted", meta_path,
                    int((~keep).sum()))
    return meta.filter(keep), img_path
