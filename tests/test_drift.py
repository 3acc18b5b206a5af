"""Drift check: adversarial validation finds a planted shift and stays near 0.5 without one."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from isicstack.data.io import load_metadata
from isicstack.evaluation.drift import FEATURES, DriftConfig, drift_check, drift_section, markdown

FAST = DriftConfig(num_rounds=60, n_folds=4)


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


def test_no_shift_gives_auc_near_half(halves):
    train, test = halves
    out = drift_check(train, test, FAST)
    assert abs(out["auc"] - 0.5) < 0.15 and not out["warning"]
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


def test_section_on_data_dir(mini_isic: Path, tmp_path: Path):
    out = drift_section(mini_isic, DriftConfig(num_rounds=30))
    assert 0 <= out["auc"] <= 1 and out["test_rows"] == 120
    assert drift_section(tmp_path, FAST) is None


def test_section_skips_a_tiny_test_file_without_reading_train(tmp_path: Path, mini_isic: Path):
    (tmp_path / "train-metadata.csv").write_text("not even a csv header\n")
    test = pl.read_csv(mini_isic / "test-metadata.csv").head(3)
    test.write_csv(tmp_path / "test-metadata.csv")
    out = drift_section(tmp_path, FAST)
    assert "3 row(s)" in out["skipped"]
