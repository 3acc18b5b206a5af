"""Tabular stage: GBDT interface, imbalance sampling, CV outputs, determinism."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isicstack.data.io import DataError
from isicstack.ledger.result import read_result
from isicstack.tabular.config import ModelSpec, TabularConfig
from isicstack.tabular.cv import downsample, run
from isicstack.tabular.models import MODEL_KINDS, load_model, make_model


def test_downsample_keeps_positives_and_ratio():
    y = np.array([1] * 10 + [0] * 990)
    idx = downsample(y, 5.0, np.random.default_rng(0))
    assert y[idx].sum() == 10 and len(idx) == 60
    assert np.array_equal(idx, downsample(y, 5.0, np.random.default_rng(0)))
    assert not np.array_equal(idx, downsample(y, 5.0, np.random.default_rng(1)))
    assert len(downsample(y, 0.0, np.random.default_rng(0))) == 1000
    assert len(downsample(y, 500.0, np.random.default_rng(0))) == 1000


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_model_native_round_trip(kind: str, tmp_path: Path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    X[:, 3] = rng.integers(0, 3, 400)
    X[rng.random(400) < 0.1, 3] = np.nan
    y = ((X[:, 0] + (X[:, 3] == 1)) > 0.8).astype(int)
    model = make_model(kind, {}, 20).fit(X, y, ["a", "b", "c", "site"], ["site"], seed=1)
    path = model.save(tmp_path / "m")
    assert path.suffix in {".txt", ".ubj", ".cbm"}
    assert b"pickle" not in path.read_bytes()[:200]
    again = load_model(path)
    np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-6)
    assert model.predict(X)[y == 1].mean() > model.predict(X)[y == 0].mean()
    with pytest.raises(ValueError, match="unknown model kind"):
        make_model("rf", {}, 1)


def _cfg(mini_isic: Path, artifacts: Path, **kw) -> TabularConfig:
    # small-data settings: LightGBM's defaults (31 leaves, lr 0.1) overfit 60 positives at once
    lgbm = {"min_data_in_leaf": 10, "num_leaves": 15, "feature_fraction": 0.5}
    models = {"lgbm": ModelSpec("lgbm", num_rounds=40, params=lgbm),
              "xgb": ModelSpec("xgb", num_rounds=40)}
    # one thread: OpenMP spin-waiting makes tiny fits on a busy 2-core machine very slow
    return TabularConfig(data_dir=str(mini_isic), artifacts=str(artifacts), models=models,
                         bags=2, neg_ratio=10.0, threads=1, **kw)


@pytest.fixture(scope="module")
def tab_run(mini_isic: Path, mini_artifacts: Path):
    return run(_cfg(mini_isic, mini_artifacts))


def test_outputs_keyed_by_isic_id(tab_run, mini_isic: Path, mini_artifacts: Path):
    folds = pl.read_parquet(mini_artifacts / "folds.parquet")
    test_ids = set(pl.read_csv(mini_isic / "test-metadata.csv")["isic_id"])
    for name in ("lgbm", "xgb"):
        oof = pl.read_parquet(mini_artifacts / "oof" / f"{name}.parquet")
        assert oof.columns == ["isic_id", "fold", "pred"]
        assert oof["isic_id"].n_unique() == oof.height == folds.height
        joined = oof.join(folds, on="isic_id")
        assert (joined["fold"] == joined["fold_right"]).all()
        assert oof["pred"].is_between(0, 1).all()
        test = pl.read_parquet(mini_artifacts / "test" / f"{name}.parquet")
        assert set(test["isic_id"]) == test_ids and test.height == len(test_ids)
        run_dir = mini_artifacts / "runs" / name
        assert len(list((run_dir / "models").iterdir())) == 3 * 2  # folds x bags
        assert (run_dir / "config.yaml").is_file() and (run_dir / "importance.csv").is_file()
    results = {r.name: r for r in tab_run}  # one result per model, as its metrics.json holds it
    assert results == {n: read_result(mini_artifacts / "runs" / n) for n in ("lgbm", "xgb")}
    # the synthetic target has table signal: clearly above the constant predictor (0.02)
    assert results["lgbm"].stage == "tabular" and results["lgbm"].pauc > 0.06
    assert set(results["xgb"].folds) == {0, 1, 2} and results["xgb"].details["n_features"] > 0


def test_rerun_is_identical(tab_run, mini_isic: Path, mini_artifacts: Path, tmp_path: Path):
    import shutil

    shutil.copy(mini_artifacts / "folds.parquet", tmp_path / "folds.parquet")
    cfg = _cfg(mini_isic, tmp_path)
    cfg.models = {"lgbm": cfg.models["lgbm"]}
    cfg.save_models = False
    run(cfg)
    a = pl.read_parquet(mini_artifacts / "oof" / "lgbm.parquet")
    b = pl.read_parquet(tmp_path / "oof" / "lgbm.parquet")
    assert a.equals(b)


def test_folds_of_other_data_refused(mini_isic: Path, tmp_path: Path):
    pl.DataFrame({"isic_id": ["ISIC_X"], "patient_id": ["P"], "target": [0], "fold": [0]}) \
        .write_parquet(tmp_path / "folds.parquet")
    with pytest.raises(DataError, match="no fold"):
        run(_cfg(mini_isic, tmp_path))


def test_no_enabled_model(mini_isic: Path, mini_artifacts: Path):
    cfg = _cfg(mini_isic, mini_artifacts)
    cfg.models = {"lgbm": ModelSpec("lgbm", enabled=False)}
    with pytest.raises(ValueError, match="no model enabled"):
        run(cfg)
