"""Operating point: threshold at a target sensitivity, confusion matrix, patient-bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pytest

from isicstack.calibration.config import OperatingPointConfig
from isicstack.calibration.operating_point import operating_point, rates, threshold_at_tpr
from isicstack.settings.layers import ConfigError, load_config


def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 positives scored 0.91..1.00, 90 negatives: 3 above 0.925, the rest below 0.5.

    At sensitivity 0.8 the threshold is the 8th highest positive score, 0.93: TP 8, FN 2,
    FP 3 (0.95, 0.96, 0.97), TN 87.
    """
    y = np.r_[np.ones(10), np.zeros(90)].astype(int)
    pred = np.r_[np.linspace(0.91, 1.0, 10), 0.95, 0.96, 0.97, np.linspace(0.0, 0.49, 87)]
    patients = np.array([f"P{i % 20}" for i in range(100)])
    return y, pred, patients


def test_threshold_is_kth_highest_positive():
    y, pred, _ = planted()
    assert threshold_at_tpr(y, pred, 0.8) == pytest.approx(0.93)
    assert threshold_at_tpr(y, pred, 1.0) == pytest.approx(0.91)
    assert threshold_at_tpr(y, pred, 0.05) == pytest.approx(1.0)  # at least one positive
    with pytest.raises(ValueError, match="no positive"):
        threshold_at_tpr(np.zeros(5), np.arange(5.0), 0.8)


def test_planted_confusion_matrix_and_rates():
    y, pred, patients = planted()
    op = operating_point(y, pred, patients, OperatingPointConfig(n_boot=200, seed=1))
    p = op["point"]
    assert (p["tp"], p["fp"], p["tn"], p["fn"]) == (8, 3, 87, 2)
    assert p["recall"] == pytest.approx(0.8)
    assert p["precision"] == pytest.approx(8 / 11)
    assert p["specificity"] == pytest.approx(87 / 90)
    assert p["f1"] == pytest.approx(16 / 21)
    assert p["review_per_1000"] == pytest.approx(110)
    assert op["patients"] == 20 and op["rows"] == 100
    for key in ("recall", "precision", "specificity", "f1", "review_per_1000", "threshold", "tp"):
        assert op["ci_low"][key] <= p[key] + 1e-9 <= op["ci_high"][key] + 2e-9, key
    assert op["ci_low"]["precision"] < op["ci_high"]["precision"]  # patients do vary


def test_bootstrap_resamples_patients_not_rows():
    """One patient holds every positive: a replicate either has all of them or none."""
    y = np.r_[np.ones(10), np.zeros(90)].astype(int)
    pred = np.r_[np.linspace(0.5, 1.0, 10), np.linspace(0.0, 0.4, 90)]
    patients = np.array(["A"] * 10 + [f"N{i % 9}" for i in range(90)])
    op = operating_point(y, pred, patients, OperatingPointConfig(n_boot=300))
    # every replicate that has patient A has all 10 positives and the same 8 found: recall 0.8
    assert op["ci_low"]["recall"] == op["ci_high"]["recall"] == pytest.approx(0.8)
    assert op["ci_low"]["tp"] % 8 == 0 and op["ci_high"]["tp"] % 8 == 0


def test_no_bootstrap_and_config_checks():
    y, pred, patients = planted()
    op = operating_point(y, pred, patients, OperatingPointConfig(n_boot=0))
    assert op["ci_low"] == {} and op["point"]["tp"] == 8
    with pytest.raises(ConfigError, match="target_tpr"):
        OperatingPointConfig(target_tpr=1.5)
    cfg = load_config(OperatingPointConfig, "none", overrides=["target_tpr=0.9"])
    assert cfg.target_tpr == 0.9


def test_rates_zero_division_is_nan():
    r = rates(0, 0, 10, 0)
    assert np.isnan(r["precision"]) and np.isnan(r["recall"]) and r["specificity"] == 1.0
