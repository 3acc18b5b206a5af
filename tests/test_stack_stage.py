"""``isic stack`` end to end: discovered inputs, the chosen method, submission.csv, and
misaligned inputs refused (the methods themselves: ``test_stacking.py``)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isicstack.data.io import DataError
from isicstack.data.metric import pauc
from isicstack.data.predictions import discover
from isicstack.ledger.result import RunResult, read_result
from isicstack.stacking.config import METHODS, StackConfig
from isicstack.stacking.methods import Stacker, fit_stacker
from isicstack.stacking.stack import run


def _write_input(art: Path, name: str, folds: pl.DataFrame, test_ids: pl.Series,
                 oracle: pl.DataFrame, noise: float, seed: int) -> None:
    """A fake level-1 model: the true probability's logit plus noise, on train and test."""
    rng = np.random.default_rng(seed)

    def score(ids: pl.Series) -> np.ndarray:
        p = pl.DataFrame({"isic_id": ids}).join(oracle, on="isic_id", how="left",
                                                maintain_order="left")["prob"].to_numpy()
        z = np.log(p) - np.log1p(-p) + noise * rng.normal(size=len(p))
        return 1 / (1 + np.exp(-z))

    (art / "oof").mkdir(exist_ok=True)
    (art / "test").mkdir(exist_ok=True)
    folds.select("isic_id", "fold").with_columns(pred=score(folds["isic_id"])).write_parquet(
        art / "oof" / f"{name}.parquet")
    pl.DataFrame({"isic_id": test_ids, "pred": score(test_ids)}).sample(
        fraction=1.0, shuffle=True, seed=seed).write_parquet(art / "test" / f"{name}.parquet")


def _ecdf(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The share of ``train`` below each ``x`` (ties count half)."""
    s = np.sort(train)
    return (np.searchsorted(s, x, "left") + np.searchsorted(s, x, "right")) / (2 * len(s))


@pytest.fixture(scope="module")
def stack_art(mini_isic: Path, mini_artifacts: Path, tmp_path_factory) -> Path:
    """A private artifacts copy (folds only) with two fake level-1 inputs."""
    art = tmp_path_factory.mktemp("stack_art")
    shutil.copy(mini_artifacts / "folds.parquet", art / "folds.parquet")
    folds = pl.read_parquet(art / "folds.parquet")
    test_ids = pl.read_csv(mini_isic / "test-metadata.csv", infer_schema=False)["isic_id"]
    oracle = pl.read_parquet(mini_isic / "oracle.parquet")
    _write_input(art, "model_a", folds, test_ids, oracle, noise=1.0, seed=1)
    _write_input(art, "model_b", folds, test_ids, oracle, noise=2.5, seed=2)
    return art


@pytest.fixture(scope="module")
def stack_run(stack_art: Path, mini_isic: Path) -> RunResult:
    [result] = run(StackConfig(data_dir=str(mini_isic), artifacts=str(stack_art)))
    return result


def test_stack_end_to_end(stack_run, stack_art: Path, mini_isic: Path):
    assert stack_run == read_result(stack_art / "runs" / "stack") and stack_run.stage == "stack"
    m = stack_run.details
    assert m["input_names"] == ["model_a", "model_b"]
    assert set(m["methods"]) == set(METHODS)
    assert m["chosen"] == max(METHODS, key=lambda k: m["methods"][k]["oof_pauc"])
    folds = pl.read_parquet(stack_art / "folds.parquet")
    oof = pl.read_parquet(stack_art / "oof" / "stack.parquet")
    assert oof.columns == ["isic_id", "fold", "pred"]
    assert oof["isic_id"].equals(folds["isic_id"]) and oof["fold"].equals(folds["fold"])
    y = folds["target"].to_numpy()
    assert pauc(y, oof["pred"].to_numpy()) == pytest.approx(stack_run.pauc)
    assert (stack_run.n, stack_run.n_pos, set(stack_run.folds)) == (
        folds.height, int(y.sum()), set(np.unique(folds["fold"])))
    assert 0 < m["oracle"]["stack_fraction"] <= 1.05
    # method auto: the stack's CV is the nested one, the best method's own CV is kept beside it
    assert m["cv"]["kind"] == "nested" and set(m["cv"]["picks"]) == {
        str(k) for k in np.unique(folds["fold"])}
    assert m["best_of_methods"]["method"] == m["chosen"]
    assert m["best_of_methods"]["oof_pauc"] == m["methods"][m["chosen"]]["oof_pauc"]
    # one scale: outer fold k's scores are the stacker picked there (fitted on the other folds)
    # mapped through the empirical CDF of its scores on those training rows
    X = np.column_stack([pl.read_parquet(stack_art / "oof" / f"{n}.parquet")["pred"].to_numpy()
                         for n in m["input_names"]])
    fold = folds["fold"].to_numpy()
    for k, pick in m["cv"]["picks"].items():
        tr, va = fold != int(k), fold == int(k)
        st = fit_stacker(pick, X[tr], y[tr], m["input_names"])
        np.testing.assert_allclose(oof["pred"].to_numpy()[va],
                                   _ecdf(st.predict(X[tr]), st.predict(X[va])), atol=2e-3,
                                   err_msg=f"fold {k} ({pick})")
    run_dir = stack_art / "runs" / "stack"
    assert {"stacker.json", "metrics.json", "config.yaml"} <= {p.name for p in run_dir.iterdir()}

    # offline inference contract: JSON stacker + raw test scores in `inputs` order
    st = Stacker.from_dict(json.loads((run_dir / "stacker.json").read_text()))
    assert st.method == m["chosen"] and st.inputs == ["model_a", "model_b"]
    test = pl.read_parquet(stack_art / "test" / "stack.parquet")
    meta_ids = pl.read_csv(mini_isic / "test-metadata.csv", infer_schema=False)["isic_id"]
    assert test["isic_id"].equals(meta_ids)
    X = np.column_stack([pl.DataFrame({"isic_id": meta_ids}).join(
        pl.read_parquet(stack_art / "test" / f"{n}.parquet"), on="isic_id",
        maintain_order="left")["pred"].to_numpy() for n in st.inputs])
    np.testing.assert_array_equal(st.predict(X), test["pred"].to_numpy())

    sub = pl.read_csv(stack_art / "submission.csv")
    assert sub.columns == ["isic_id", "target"] and sub["isic_id"].equals(meta_ids)
    np.testing.assert_allclose(sub["target"].to_numpy(), test["pred"].to_numpy())


def test_stack_logs_discovered_inputs_and_honours_config(stack_art, mini_isic, caplog, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(stack_art, art)
    cfg = StackConfig(data_dir=str(mini_isic), artifacts=str(art), inputs=["model_b"],
                      method="rank_mean", candidates=["rank_mean"], submission=False)
    with caplog.at_level(logging.INFO):
        [result] = run(cfg)
    assert result.details["input_names"] == ["model_b"] and result.details["chosen"] == "rank_mean"
    assert not any("all OOF files" in r.message for r in caplog.records)
    caplog.clear()
    # a fused run's image term alone is a GBDT feature, not a level-1 model: left out too
    for kind in ("oof", "test"):
        shutil.copy2(art / kind / "model_b.parquet", art / kind / "vision_x_image_part.parquet")
    with caplog.at_level(logging.INFO):
        run(StackConfig(data_dir=str(mini_isic), artifacts=str(art), candidates=["rank_mean"]))
    assert any("inputs" in r.message and r.message.endswith("model_a, model_b")
               for r in caplog.records)  # stack* and *_image_part left out
    assert discover(art, include_stack=True, include_parts=True)[-1] == "vision_x_image_part"


@pytest.mark.parametrize("damage", ["fold", "row", "test"])
def test_stack_rejects_misaligned_inputs(damage, stack_art, mini_isic, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(stack_art, art)
    if damage == "test":
        path = art / "test" / "model_b.parquet"
        pl.read_parquet(path).slice(1).write_parquet(path)
    else:
        path = art / "oof" / "model_b.parquet"
        df = pl.read_parquet(path)
        df = df.with_columns(fold=pl.when(pl.int_range(pl.len()) == 5).then((pl.col("fold") + 1)
                                                                            % 3)
                             .otherwise(pl.col("fold"))) if damage == "fold" else df.slice(1)
        df.write_parquet(path)
    (art / "submission.csv").unlink(missing_ok=True)
    with pytest.raises(DataError, match="model_b.parquet"):
        run(StackConfig(data_dir=str(mini_isic), artifacts=str(art)))
    assert not (art / "submission.csv").exists()
