"""Drift check: adversarial validation finds a planted shift and does not flag its absence."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from isicstack.data.io import load_metadata
from isicstack.evaluation.config import DriftConfig
from isicstack.evaluation.drift import FEATURES, drift_check, drift_section, markdown

FAST = DriftConfig(num_rounds=60, n_folds=4)
# AUC without a shift. It sits below 0.5 here (0.36-0.39 over seeds 0-3): per-patient columns
# (age_approx, attribution) let the model learn the training folds' patients, which misleads it
# on held-out ones. Above 0.65 means the patient grouping broke (ungrouped folds: 0.99).
NO_SHIFT = (0.25, 0.65)


@pytest.fixture(scope="module")
def halves(mini_isic: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The mini train file split by patient into a pseudo train and a pseudo test half."""
    meta = load_metadata(mini_isic / "train-metadata.csv", "train")
    patients = sorted(meta["patient_id"].unique().to_list())
    test_p = patients[::2]
    return (meta.filter(~pl.col("patient_id").is_in(test_p)),
            meta.filter(pl.col("patient_id").is_in(test_p)).drop("target"))


def test_planted_shift_is_detected_and_named(halves, caplog):
    train, test = halves
    sd = train["tbp_lv_H"].std()
    shifted = test.with_columns(pl.col("tbp_lv_H") + 2 * sd)
    with caplog.at_level(logging.WARNING):
        out = drift_check(train, shifted, FAST, source="planted")
    assert out["auc"] > 0.9 and out["warning"]
    assert next(iter(out["importance"])) == "tbp_lv_H"
    assert "tbp_lv_H" in caplog.text and "AUC" in caplog.text
    md = "\n".join(markdown(out))
    assert "**Warning**" in md and "| tbp_lv_H |" in md


def test_no_shift_is_not_flagged(halves):
    train, test = halves
    out = drift_check(train, test, FAST)
    assert NO_SHIFT[0] < out["auc"] < NO_SHIFT[1] and not out["warning"], out["auc"]
    assert set(out["importance"]) == set(FEATURES)
    assert "**Warning**" not in "\n".join(markdown(out))


def test_uses_only_test_file_columns():
    from isicstack.data.schema import TEST_COLUMNS, TRAIN_ONLY

    assert set(FEATURES) <= set(TEST_COLUMNS) and not set(FEATURES) & set(TRAIN_ONLY)
    assert "isic_id" not in FEATURES and "patient_id" not in FEATURES


def test_tiny_test_file_is_skipped_with_reason(halves):
    train, test = halves
    out = drift_check(train, test.head(3), FAST)
    assert "3 row(s)" in out["skipped"] and "auc" not in out
    assert "Skipped" in "\n".join(markdown(out))


def _data_dir(mini_isic: Path, folder: Path, shift_sd: float) -> Path:
    """A data folder whose test file is half the mini train patients (test columns only),
    with ``tbp_lv_H`` moved by ``shift_sd`` train standard deviations on the test rows."""
    from isicstack.data.io import write_csv
    from isicstack.data.schema import TEST_COLUMNS

    raw = pl.read_csv(mini_isic / "train-metadata.csv", infer_schema=False)
    test_p = sorted(raw["patient_id"].unique().to_list())[::2]
    is_test = pl.col("patient_id").is_in(test_p)
    sd = raw["tbp_lv_H"].cast(pl.Float64).std()
    test = raw.filter(is_test).select(TEST_COLUMNS).with_columns(
        (pl.col("tbp_lv_H").cast(pl.Float64) + shift_sd * sd).cast(pl.String))
    folder.mkdir()
    write_csv(raw.filter(~is_test), folder / "train-metadata.csv")
    write_csv(test, folder / "test-metadata.csv")
    return folder


def test_section_on_data_dir_finds_a_planted_shift(mini_isic: Path, tmp_path: Path):
    """Through the files the report reads: a 2-sd shift of one column is flagged and named."""
    out = drift_section(_data_dir(mini_isic, tmp_path / "d", 2.0), FAST)
    assert out["source"] == str(tmp_path / "d") and out["test_rows"] > 500
    assert out["auc"] > 0.9 and out["warning"], out["auc"]
    assert next(iter(out["importance"])) == "tbp_lv_H"
    first, second = list(out["importance"].values())[:2]
    assert first > 2 * second  # it drives the separation, not merely leads


def test_section_on_data_dir_without_shift_is_not_flagged(mini_isic: Path, tmp_path: Path):
    out = drift_section(_data_dir(mini_isic, tmp_path / "d", 0.0), FAST)
    assert NO_SHIFT[0] < out["auc"] < NO_SHIFT[1] and not out["warning"], out["auc"]
    assert drift_section(tmp_path / "empty", FAST) is None  # no files: no section


def test_section_skips_a_tiny_test_file_without_reading_train(tmp_path: Path, mini_isic: Path):
    (tmp_path / "train-metadata.csv").write_text("not even a csv header\n")
    test = pl.read_csv(mini_isic / "test-metadata.csv").head(3)
    test.write_csv(tmp_path / "test-metadata.csv")
    out = drift_section(tmp_path, FAST)
    assert "3 row(s)" in out["skipped"]
