"""Calibration: a planted miscalibration is undone, the map is nested and monotone (per-fold
pAUC unchanged), the stage writes JSON maps that `isic predict` and the Kaggle package apply."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isicstack.calibration.fit import fit_map, nested_calibrate, prior_shift
from isicstack.calibration.maps import CalMap, safe_logit, sigmoid
from isicstack.data.metric import fold_scores
from isicstack.evaluation.calibration_metrics import (
    losses,
    monotone_floor,
    reliability,
    row_losses,
)


def planted(n: int = 30000, seed: int = 0) -> dict[str, np.ndarray]:
    """Known risks p (rare, like lesions), labels drawn from them, and an over-confident,
    shifted score sigmoid(2 logit(p) + 1); patients of 50 rows, 5 patient-grouped folds."""
    rng = np.random.default_rng(seed)
    p = sigmoid(rng.normal(-4.5, 1.0, n))
    y = (rng.random(n) < p).astype(np.int64)
    patients = np.arange(n) // 50
    return {"p": p, "y": y, "score": sigmoid(2 * safe_logit(p) + 1), "patients": patients,
            "fold": patients % 5}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return planted()


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_planted_miscalibration_is_undone(data, method: str):
    y, truth = data["y"], brier(data["y"], data["p"])
    cal, maps = nested_calibrate(data["score"], y, data["fold"], method)
    excess = brier(y, data["score"]) - truth  # the planted score's Brier above the truth's
    assert excess > 2e-4
    assert abs(brier(y, cal) - truth) < 0.1 * excess  # out of fold, 90 % of it is gone
    assert brier(y, cal) < 1.01 * truth
    ll = {k: float(np.mean(row_losses(y, v)["log_loss"]))
          for k, v in (("truth", data["p"]), ("score", data["score"]), ("cal", cal))}
    assert ll["score"] > 1.2 * ll["truth"] and ll["cal"] < 1.01 * ll["truth"]
    assert set(maps) == set(range(5))
    if method == "platt":  # the inverse of the planted map: a = 1/2, b = -1/2
        m = fit_map(data["score"], y, "platt")
        assert m.a == pytest.approx(0.5, abs=0.05) and m.b == pytest.approx(-0.5, abs=0.25)


@pytest.mark.parametrize("method", ["platt", "isotonic", "prior"])
def test_per_fold_pauc_unchanged(data, method: str):
    """Each fold is mapped by one strictly increasing map: its ranking, hence pAUC, is kept,
    also where isotonic is flat (tie-break) and where the sigmoid saturates."""
    score = np.concatenate([data["score"], [0.0, 1e-250, 1e-200, 1.0 - 1e-12]])
    y = np.concatenate([data["y"], [0, 0, 0, 1]])
    fold = np.concatenate([data["fold"], [0, 0, 0, 0]])
    cal, _ = nested_calibrate(score, y, fold, method, shift=1.3)
    for k in range(5):
        m = fold == k
        before, after = fold_scores(y[m], score[m]), fold_scores(y[m], cal[m])
        assert after["pauc"] == before["pauc"] and after["auc"] == before["auc"]
        order = np.argsort(score[m], kind="stable")
        assert np.all(np.diff(cal[m][order]) >= 0)
        distinct = np.diff(score[m][order]) > 0
        assert np.all(np.diff(cal[m][order])[distinct] > 0)  # no new ties


def test_nested_fold_never_sees_its_own_labels(data):
    y2 = data["y"].copy()
    held = data["fold"] == 2
    y2[held] = 1 - y2[held]  # fold 2's labels turned upside down
    for method in ("platt", "isotonic"):
        a, _ = nested_calibrate(data["score"], data["y"], data["fold"], method)
        b, _ = nested_calibrate(data["score"], y2, data["fold"], method)
        np.testing.assert_array_equal(a[held], b[held])
        assert not np.allclose(a[~held], b[~held])  # the other folds' maps did see them


def test_prior_shift_undoes_the_training_mix():
    assert prior_shift(100, 10000, 10.0, 2.0) == pytest.approx(math.log(2) + math.log(10))
    assert prior_shift(100, 10000) == 0.0  # every row, no weight: nothing to undo
    assert prior_shift(100, 500, 10.0) == 0.0  # fewer negatives than asked for: all kept
    # a model calibrated on the subsampled mix: its odds are 10x the data's; the shift fixes it
    rng = np.random.default_rng(1)
    p = sigmoid(rng.normal(-5, 1, 200_000))
    y = rng.random(p.size) < p
    trained = sigmoid(safe_logit(p) + prior_shift(int(y.sum()), int((~y).sum()), 10.0))
    shifted = CalMap("prior", prior_shift(int(y.sum()), int((~y).sum()), 10.0)).apply(trained)
    np.testing.assert_allclose(shifted, p, rtol=1e-4, atol=1e-6)


def test_map_round_trips_as_json_and_rejects_bad_files(data):
    m = fit_map(data["score"], data["y"], "isotonic", 0.7)
    back = CalMap.from_dict(json.loads(json.dumps(m.to_dict())))
    np.testing.assert_array_equal(back.apply(data["score"]), m.apply(data["score"]))
    with pytest.raises(ValueError, match="method"):
        CalMap.from_dict({"method": "magic"})
    with pytest.raises(ValueError, match="knots"):
        CalMap.from_dict({"method": "isotonic", "knots_x": [0.0], "knots_y": []})
    with pytest.raises(ValueError, match="slope"):
        CalMap.from_dict({"method": "platt", "a": -1.0})
    raw = fit_map(np.linspace(-3, 3, 100), np.r_[np.zeros(50), np.ones(50)], "platt")
    assert raw.scale == "raw"  # scores outside [0, 1] are used as they are


def test_losses_and_reliability_intervals(data):
    preds = {"truth": data["p"], "score": data["score"]}
    out = losses(data["y"], preds, data["patients"], n_boot=200, reference="truth")
    assert out["truth"]["brier"] == pytest.approx(brier(data["y"], data["p"]))
    lo, hi = out["score"]["brier_ci"]
    assert lo < out["score"]["brier"] < hi
    assert out["score"]["brier_ratio"] > 1.01 and out["score"]["brier_ratio_ci"][0] > 1.0
    assert out["score"]["brier_diff_ci"][0] > 0 and out["truth"]["brier_ratio"] == 1.0
    assert out["score"]["log_loss_diff_ci"][0] > 0
    assert monotone_floor(data["y"], data["score"]) <= brier(data["y"], data["p"]) * 1.01
    rel = reliability(data["y"], data["p"], data["patients"], bins=5, n_boot=100)
    assert sum(rel["rows"]) == data["y"].size and len(rel["observed_lo"]) == 5
    for pred, obs in zip(rel["predicted"], rel["observed"], strict=True):
        assert obs == pytest.approx(pred, rel=0.35, abs=0.002)


# --- the stage, predict and the package on the session's mini data ------------------------

@pytest.fixture(scope="module")
def trained(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Path:
    """A LightGBM run (negatives subsampled, positives up-weighted) with saved models."""
    from isicstack.tabular.config import ModelSpec, TabularConfig
    from isicstack.tabular.cv import run as train_tabular

    art = tmp_path_factory.mktemp("calibrate") / "artifacts"
    art.mkdir()
    for name in ("folds.parquet", "folds.json"):
        shutil.copy2(mini_artifacts / name, art / name)
    spec = ModelSpec("lgbm", num_rounds=30, params={"min_data_in_leaf": 5,
                                                    "scale_pos_weight": 2.0})
    train_tabular(TabularConfig(data_dir=str(mini_isic), artifacts=str(art),
                                models={"lgbm": spec}, bags=1, neg_ratio=5.0, threads=1))
    return art


@pytest.fixture(scope="module")
def calibrated(trained: Path, mini_isic: Path) -> dict:
    """The calibrate run's per-model summary (its result's details, as metrics.json holds it)."""
    from isicstack.evaluation.calibrate import run
    from isicstack.evaluation.config import CalibrateConfig
    from isicstack.ledger.result import read_result

    [result] = run(CalibrateConfig(artifacts=str(trained), data_dir=str(mini_isic), n_boot=50))
    assert result == read_result(trained / "calibration") and result.stage == "calibrate"
    return result.details


def test_stage_writes_maps_and_nested_oof(trained: Path, calibrated: dict, mini_isic: Path):
    from isicstack.calibration.maps import read_map
    from isicstack.calibration.prior import training_prior

    folds = pl.read_parquet(trained / "folds.parquet")
    y = folds["target"].to_numpy()
    prior = training_prior(trained, "lgbm", y)
    neg, pos = int((y == 0).sum()), int(y.sum())
    assert prior["shift"] == pytest.approx(math.log(2.0) + math.log(neg / (5 * pos)))
    doc = json.loads((trained / "calibration" / "lgbm.json").read_text())
    assert doc["map"]["method"] == "platt" and set(doc["fold_maps"]) == {"0", "1", "2"}
    assert doc["source"]["file"] == "runs/lgbm/metrics.json"
    oof = pl.read_parquet(trained / "calibration" / "oof" / "lgbm.parquet")
    assert oof.columns == ["isic_id", "fold", "pred", "raw", "prior"]
    assert not (trained / "oof" / "calibration").exists()  # never beside the stack's inputs
    m = calibrated["models"]["lgbm"]
    assert m["fold_pauc_max_shift"] == 0.0 and "oracle" in m["losses"]
    assert m["losses"]["calibrated"]["brier"] < m["losses"]["raw"]["brier"]
    cal, why = read_map(trained, "lgbm")
    assert cal is not None and why == ""


def test_stale_map_is_refused(trained: Path, calibrated: dict, tmp_path: Path):
    from isicstack.calibration.maps import apply_maps, read_map

    copy = tmp_path / "art"
    shutil.copytree(trained, copy)
    metrics = copy / "runs" / "lgbm" / "metrics.json"
    metrics.write_text(metrics.read_text() + " ")  # as if the stage had been rerun
    cal, why = read_map(copy, "lgbm")
    assert cal is None and "another training run" in why
    with pytest.raises(FileNotFoundError, match="required, but"):
        apply_maps(copy, {"lgbm": np.array([0.1])}, "required", ("lgbm",))
    assert apply_maps(copy, {"lgbm": np.array([0.1])}, "auto")[0] == {}


def test_predict_adds_risk_and_package_ships_maps(trained: Path, calibrated: dict,
                                                  mini_isic: Path, tmp_path: Path):
    from isicstack.inference.config import PackageConfig, PredictConfig
    from isicstack.inference.package import MANIFEST
    from isicstack.inference.package import run as package
    from isicstack.inference.predict import run as predict

    cfg = PredictConfig(data_dir=str(mini_isic), artifacts=str(trained), stacker="",
                        out=str(tmp_path / "sub.csv"), preds_dir=str(tmp_path / "preds"))
    summary = predict(cfg)
    assert summary["calibrated"] == ["lgbm"] and summary["risk_file"]
    risk = pl.read_csv(tmp_path / "preds" / "risk.csv")
    preds = pl.read_parquet(tmp_path / "preds" / "lgbm.parquet")
    assert preds.columns == ["isic_id", "pred", "prob"]
    sub = pl.read_csv(tmp_path / "sub.csv")
    np.testing.assert_allclose(sub["target"].to_numpy(), risk["score"].to_numpy())
    saved = CalMap.from_dict(json.loads((trained / "calibration" / "lgbm.json").read_text())["map"])
    np.testing.assert_allclose(risk["risk"].to_numpy(), saved.apply(risk["score"].to_numpy()))
    predict(replace(cfg, submit_calibrated=True, out=str(tmp_path / "sub2.csv")))
    sub2 = pl.read_csv(tmp_path / "sub2.csv")
    np.testing.assert_allclose(sub2["target"].to_numpy(), risk["risk"].to_numpy(), rtol=1e-6)
    assert (np.argsort(sub2["target"].to_numpy(), kind="stable")
            == np.argsort(sub["target"].to_numpy(), kind="stable")).all()
    out = tmp_path / "kaggle"
    package(PackageConfig(artifacts=str(trained), out_dir=str(out), wheel=False,
                          predict_overrides=["stacker="]))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["calibrated"] == ["lgbm"]
    assert "artifacts/calibration/lgbm.json" in {Path(f).as_posix() for f in manifest["files"]}


def test_calibrate_config_resolves():
    from isicstack.evaluation.config import CalibrateConfig
    from isicstack.settings.layers import ConfigError, load_config

    cfg = load_config(CalibrateConfig, "calibrate", "smoke", ["method=isotonic"])
    assert cfg.method == "isotonic" and cfg.n_boot == 50
    with pytest.raises(ConfigError, match="method"):
        load_config(CalibrateConfig, "calibrate", "default", ["method=magic"])


def test_prior_weight_of_lightgbm_is_unbalance_counts_the_kept_negatives():
    """is_unbalance balances the rows a GBDT trains on: with 10 negatives kept per positive
    the positive weight is 10, not the data's negatives/positives (which would double-count
    the subsampling); CatBoost's auto weights are refused, not guessed."""
    from isicstack.calibration.prior import _weight
    from isicstack.data.io import DataError

    assert _weight({"is_unbalance": True}, 10, 5000, 10.0) == 10.0
    assert _weight({"is_unbalance": True}, 10, 5000, 0.0) == 500.0
    assert _weight({"scale_pos_weight": 2.5}, 10, 5000, 10.0) == 2.5
    with pytest.raises(DataError, match="auto_class_weights"):
        _weight({"auto_class_weights": "Balanced"}, 10, 5000, 0.0)


def test_image_run_prior_reads_grouped_and_flat_configs(tmp_path: Path):
    """A CNN's prior comes from data.neg_ratio and optim.pos_weight; a run saved before the
    image config's keys were grouped (flat neg_ratio, pos_weight) gives the same prior."""
    import yaml

    from isicstack.calibration.prior import training_prior
    from isicstack.settings.keys import flatten, with_keys
    from isicstack.settings.layers import save_config
    from isicstack.vision.config import ImageConfig

    cfg = with_keys(ImageConfig(), {"data.neg_ratio": 4.0, "optim.pos_weight": 2.0})
    y = np.array([1] * 10 + [0] * 990)
    save_config(cfg, tmp_path / "runs" / "vision_new" / "config.yaml")
    back = {new: old for old, new in ImageConfig.MOVED_KEYS.items()}
    old = {back.get(k, k): v for k, v in flatten(yaml.safe_load(
        (tmp_path / "runs" / "vision_new" / "config.yaml").read_text())).items()}
    (tmp_path / "runs" / "vision_old").mkdir()
    (tmp_path / "runs" / "vision_old" / "config.yaml").write_text(yaml.safe_dump(old))
    new_prior = training_prior(tmp_path, "vision_new", y)
    assert new_prior == training_prior(tmp_path, "vision_old", y)
    assert (new_prior["neg_ratio"], new_prior["pos_weight"]) == (4.0, 2.0)
    assert new_prior["shift"] == pytest.approx(prior_shift(10, 990, 4.0, 2.0))
    assert new_prior["why"].startswith("CNN: 4 negatives")
