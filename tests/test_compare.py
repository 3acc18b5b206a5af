"""Paired comparisons: the corrected repeated-CV t-test, the patient bootstrap, run loading,
conditions, and `isic evaluate` + `isic compare` end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from isicstack.data.io import DataError
from isicstack.data.metric import pauc
from isicstack.evaluation.config import EvaluateConfig
from isicstack.evaluation.evaluate import compare
from isicstack.evaluation.evaluate import run as evaluate
from isicstack.evaluation.paired import (
    Scored,
    corrected_t,
    fold_paucs,
    paired,
    weighted_pauc,
)

SMALL = ["bags=1", "threads=1", "features.groups=[raw,lesion,categorical]"]


def _runs(signal: float, noise_seed: int, n: int = 6000, seeds: int = 3) -> list[Scored]:
    """Runs of one model on the same rows over fold seeds: a shared truth, own noise."""
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.03).astype(np.int64)
    patient = rng.integers(0, 400, n)
    truth = 1.2 * y + rng.normal(size=n)
    noise = np.random.default_rng(noise_seed)
    return [Scored(f"m@{s}", str(s), y, (patient + s) % 5, patient.astype(str),
                   truth + signal * y + noise.normal(0, 0.5, n)) for s in range(seeds)]


def test_weighted_pauc_is_the_metric():
    rng = np.random.default_rng(1)
    y = (rng.random(3000) < 0.05).astype(int)
    p = np.round(y + rng.normal(size=3000), 1)  # many ties
    assert weighted_pauc(y, p, np.ones((1, 3000)))[0] == pytest.approx(pauc(y, p), abs=1e-12)
    w = rng.integers(0, 3, 3000).astype(float)
    m = 0.2  # sklearn's weighted max_fpr AUC, un-standardised as in data.metric.pauc
    scaled = roc_auc_score(1 - y, -p, max_fpr=m, sample_weight=w)
    expect = 0.5 * m**2 + (m - 0.5 * m**2) / 0.5 * (scaled - 0.5)
    assert weighted_pauc(y, p, w[None])[0] == pytest.approx(expect, abs=1e-12)


def test_corrected_t_widens_the_naive_interval():
    """Nadeau-Bengio: var(d) * (1/J + n_test/n_train), not var(d) / J (the folds overlap)."""
    a, b = _runs(0.0, 1), _runs(0.0, 2)
    d = np.array([fold_paucs(rb)[k] - fold_paucs(ra)[k]
                  for ra, rb in zip(a, b, strict=True) for k in range(5)])
    sizes = np.bincount(a[0].fold)
    ratio = np.mean(sizes / (sizes.sum() - sizes))
    t = corrected_t(a, b)
    assert t["n_fold_diffs"] == 15 and t["df"] == 14
    assert t["mean_fold_diff"] == pytest.approx(d.mean())
    assert t["corrected_se"] == pytest.approx(math.sqrt(d.var(ddof=1) * (1 / 15 + ratio)))
    assert t["corrected_se"] > 2 * d.std(ddof=1) / math.sqrt(15)  # the naive se, here ~2.2x
    half = stats.t.ppf(0.975, 14) * t["corrected_se"]
    assert t["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert t["p_value"] == pytest.approx(2 * stats.t.sf(abs(d.mean()) / t["corrected_se"], 14))


def test_planted_gain_is_found_and_noise_is_not():
    base = _runs(0.0, 1)
    better = paired(base, _runs(0.8, 2), n_boot=300)
    assert better["verdict"] == "b higher"
    assert better["bootstrap"]["ci"][0] > 0 and better["corrected_t"]["ci"][0] > 0
    same = paired(base, _runs(0.0, 3), n_boot=300)
    assert same["verdict"] == "no significant difference"
    assert same["bootstrap"]["ci"][0] < 0 < same["bootstrap"]["ci"][1]
    itself = paired(base, base, n_boot=100)
    assert itself["corrected_t"]["p_value"] == 1.0 and itself["bootstrap"]["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="nothing to pair"):
        paired(base[:1], base[1:2], n_boot=0)


def test_unpaired_runs_are_named_and_t_only_is_said():
    base, other = _runs(0.0, 1), _runs(0.8, 2)
    r = paired(base, other[:2], n_boot=0)
    assert r["n_seeds"] == 2 and r["unpaired"] == [base[2].label]
    assert r["bootstrap"] is None and r["verdict"].endswith("(corrected t only: n_boot=0)")
    assert paired(base, other, n_boot=50)["unpaired"] == []


def _stage_run(root: Path, seed: int, name: str, pred: np.ndarray, folds: pl.DataFrame,
               threads: int = 1, **more: str) -> None:
    """An artifacts folder as a stage leaves it: folds, oof/<name>, runs/<name>/provenance
    (``more``: further recorded conditions, e.g. ``python``, ``precision``)."""
    (root / "oof").mkdir(parents=True, exist_ok=True)
    (root / "runs" / name).mkdir(parents=True, exist_ok=True)
    folds.write_parquet(root / "folds.parquet")
    folds.select("isic_id", "fold").with_columns(pred=pred).write_parquet(
        root / "oof" / f"{name}.parquet")
    (root / "runs" / name / "provenance.json").write_text(json.dumps(
        {"inputs": {}, "conditions": {"cpu_model": "x", "cpu_bf16": False, "gpu": None,
                                      "threads": threads, "loader_workers": 0,
                                      "libraries": {"torch": "1"}, **more}}))


def test_compare_stage_runs_by_glob_and_conditions(tmp_path: Path, capsys):
    runs_a, runs_b = _runs(0.0, 1, n=2000), _runs(0.6, 2, n=2000)
    for s, (ra, rb) in enumerate(zip(runs_a, runs_b, strict=True)):
        folds = pl.DataFrame({"isic_id": [f"ISIC_{i:07d}" for i in range(2000)],
                              "patient_id": ra.patient, "target": ra.y, "fold": ra.fold})
        _stage_run(tmp_path / f"seed{s}", s, "old", ra.pred, folds)
        _stage_run(tmp_path / f"seed{s}", s, "new", rb.pred, folds, threads=1 if s else 2)
    a, b = f"{tmp_path}/seed*:old", f"{tmp_path}/seed*:new"
    with pytest.raises(DataError, match=r"differ in \['threads'\]"):
        compare(a, b, n_boot=50)
    out = compare(a, b, n_boot=50, allow_different_conditions=True,
                  out=tmp_path / "cmp.json")["oof"]
    assert out["n_seeds"] == 3 and out["conditions_differ"] == ["threads"]
    assert out["oof_pauc_b"][0] == pytest.approx(pauc(runs_b[0].y, runs_b[0].pred))
    printed = capsys.readouterr().out
    assert "CONDITIONS DIFFER (threads)" in printed and "corrected repeated-CV t-test" in printed
    assert json.loads((tmp_path / "cmp.json").read_text())["results"]["oof"]["n_seeds"] == 3
    shutil.rmtree(tmp_path / "seed0" / "runs" / "new")  # no record: refused as well
    with pytest.raises(DataError, match="conditions not recorded"):
        compare(a, b, n_boot=0)
    with pytest.raises(FileNotFoundError, match="no folder matches"):
        compare(f"{tmp_path}/nope*:old", b)


def test_evaluate_and_compare(mini_isic, mini_artifacts, capsys):
    common = dict(data_dir=str(mini_isic), artifacts=str(mini_artifacts), profile="smoke",
                  fold_seeds=[0, 1], n_folds=3, models=["lgbm"])
    a = evaluate(EvaluateConfig(name="a", stage_overrides=SMALL, **common))
    evaluate(EvaluateConfig(name="b", stage_overrides=[*SMALL, "models.lgbm.num_rounds=5"],
                            **common))
    assert a["conditions"]["threads"] == 1 and set(a["oof_files"]) == {"0", "1"}
    seed0 = pl.read_parquet(mini_artifacts / "evals" / a["oof_files"]["0"])
    folds = pl.read_parquet(mini_artifacts / "folds.parquet")
    assert pauc(seed0["target"].to_numpy(), seed0["lgbm"].to_numpy()) == \
        pytest.approx(a["scores"]["lgbm"]["0"])
    assert seed0["isic_id"].sort().equals(folds["isic_id"].sort())
    assert sorted(a["fold_pauc"]["lgbm"]["0"]) == [0, 1, 2]
    out = compare("a", "b", artifacts=mini_artifacts, n_boot=100)
    r = out["lgbm"]
    assert r["n_seeds"] == 2 and r["corrected_t"]["n_fold_diffs"] <= 6
    assert r["oof_pauc_a"] == pytest.approx([a["scores"]["lgbm"]["0"], a["scores"]["lgbm"]["1"]])
    assert "patient-bootstrap CI" in capsys.readouterr().out
    same = compare("a", "a", artifacts=mini_artifacts, n_boot=50)["lgbm"]
    assert same["bootstrap"]["pooled_oof_diff"] == 0.0 and same["corrected_t"]["p_value"] == 1.0
    with pytest.raises(FileNotFoundError, match="no evaluation named"):
        compare("a", "zzz", artifacts=mini_artifacts)


def test_compare_cli(tmp_path: Path, capsys):
    """`isic compare`: options reach compare(); a refused pair is exit 1 naming the keys."""
    from isicstack.pipelines.cli import main

    runs_a, runs_b = _runs(0.0, 1, n=1500, seeds=2), _runs(0.0, 2, n=1500, seeds=2)
    for s, (ra, rb) in enumerate(zip(runs_a, runs_b, strict=True)):
        folds = pl.DataFrame({"isic_id": [f"ISIC_{i:07d}" for i in range(1500)],
                              "patient_id": ra.patient, "target": ra.y, "fold": ra.fold})
        _stage_run(tmp_path / f"seed{s}", s, "a", ra.pred, folds)
        _stage_run(tmp_path / f"seed{s}", s, "b", rb.pred, folds, threads=2)
    a, b = f"{tmp_path}/seed{{0,1}}:a", f"{tmp_path}/seed{{0,1}}:b"
    assert main(["compare", a, b, "--n-boot", "0"]) == 1
    assert "differ in ['threads']" in capsys.readouterr().err
    out = tmp_path / "r.json"
    assert main(["compare", a, b, "--n-boot", "20", "--allow-different-conditions",
                 "--out", str(out)]) == 0
    assert "CONDITIONS DIFFER" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"]["oof"]["bootstrap"]["n_boot"] == 20
    for s, rb in enumerate(runs_b):  # same threads, another Python and precision: refused too
        folds = pl.read_parquet(tmp_path / f"seed{s}" / "folds.parquet")
        _stage_run(tmp_path / f"seed{s}", s, "b", rb.pred, folds, python="0.0",
                   precision="bf16-mixed")
    assert main(["compare", a, b, "--n-boot", "0"]) == 1
    assert "differ in ['precision', 'python']" in capsys.readouterr().err
    assert main(["compare", a, b, "--n-boot", "0", "--allow-different-conditions"]) == 0
    assert "CONDITIONS DIFFER (precision, python)" in capsys.readouterr().out


def test_threads_are_compared_only_within_one_stage():
    """A stack (1 thread) vs its tabular input (2 threads) is a comparison of models, not of
    thread counts; two tabular runs at 1 and 2 threads are not comparable; the machine, Python
    and the libraries always count, precision within one stage (bf16 CNN vs float32 GBDT is a
    comparison of models)."""
    from isicstack.conditions import differing, run_conditions

    tab = run_conditions(2, stage="tabular")
    assert differing(run_conditions(1, stage="stack"), tab) == []
    assert differing(run_conditions(1, stage="tabular"), tab) == ["threads"]
    other_box = {**tab, "stage": "stack", "cpu_bf16": not tab["cpu_bf16"],
                 "libraries": {**tab["libraries"], "torch": "0.0"}}
    assert differing(other_box, tab) == ["cpu_bf16", "libraries"]
    assert differing({**tab, "stage": "stack", "python": "0.0"}, tab) == ["python"]
    bf16 = run_conditions(2, precision="bf16-mixed", stage="image")
    assert differing(bf16, run_conditions(2, stage="image")) == ["precision"]
    assert differing(bf16, tab) == []  # an image run vs a tabular one: models, not precision
    assert differing(None, tab) == ["conditions not recorded"]
    fewer = {**tab, "libraries": {k: tab["libraries"][k] for k in ("torch", "numpy")}}
    assert differing(fewer, tab) == []  # an older record lists fewer libraries: not a difference
    fewer["libraries"]["numpy"] = "0.0"
    assert differing(fewer, tab) == ["libraries"]
    app_only = {**tab, "libraries": {**tab["libraries"], "gradio": "0.0", "mlflow": "0.0"}}
    assert differing(app_only, tab) == []  # the web app's or the ledger's version scores nothing
    old = {k: v for k, v in tab.items() if k != "stage"}  # a record of before: strict
    assert differing({**old, "threads": 1}, old) == ["threads"]
