"""A run's result in one shape (ledger/result.py): written by finish_run, read back for every
stage, and the three metrics.json shapes of before (old run folders, Kaggle packages) still
read, from literal files as those stages wrote them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from isicstack.data.io import write_json
from isicstack.ledger.finish import finish_run
from isicstack.ledger.result import FORMAT, FoldScore, RunResult, read_result, trained_folds
from isicstack.ledger.store import _numbers

# `isic train-tabular` (runs/lgbm/metrics.json), before the one shape
TABULAR_BEFORE = {
    "features_seconds": 0.44, "fit_seconds": 3.66,
    "fold_auc": {"0": 0.8126559976508588, "1": 0.8342047128129602, "2": 0.8711308844779072},
    "fold_pauc": {"0": 0.09285714285714285, "1": 0.11098674521354931, "2": 0.12032093695338046},
    "fold_pauc_mean": 0.10805494167469087, "fold_pauc_std": 0.011402093390630254,
    "model": "lgbm", "n_features": 423, "oof_auc": 0.8389788155019805,
    "oof_pauc": 0.10593405504086967, "positives": 83, "rows": 3000, "seconds": 3.71}


def _fold_record(k: int, pauc: float, auc: float, n_valid: int) -> dict:
    return {"auc": auc, "fold": k, "has_test": True, "n_pos": 28, "n_valid": n_valid,
            "pauc": pauc, "resumed_from_step": None, "score_seconds": 1.5, "seconds": 2.4,
            "steps": 4, "train_seconds": 0.9, "world_size": 1}


# `isic train-image fusion=true` (runs/vision_fused/metrics.json), before the one shape
IMAGE_BEFORE = {
    "bad_images": [], "data_mode": "memory", "fold_hash": "aa7c1f317585c5b1",
    "folds": {"0": _fold_record(0, 0.09195419174864189, 0.8113713111143738, 1001),
              "1": _fold_record(1, 0.10472754050073635, 0.8248527245949927, 998),
              "2": _fold_record(2, 0.11396303901437368, 0.8636398205186706, 1001)},
    "fusion": True,
    "image_part": {"auc": 0.4786502885040333, "name": "vision_fused_image_part",
                   "oof_path": "a/oof/vision_fused_image_part.parquet",
                   "pauc": 0.01219936310204823,
                   "test_path": "a/test/vision_fused_image_part.parquet"},
    "image_size": 32, "init_from": "vision_imgonly", "mean_fold_pauc": 0.1035482570879173,
    "model_name": "test_resnet", "name": "vision_fused",
    "oof": {"auc": 0.8280292923493768, "n": 3000, "n_pos": 83, "pauc": 0.09918425845996254},
    "oof_path": "a/oof/vision_fused.parquet", "precision": "32-true", "seconds": 6.9,
    "steps": 4, "test_path": "a/test/vision_fused.parquet",
    "timings": {"crops_seconds": 0.0, "score_seconds": 4.1, "train_seconds": 2.6},
    "world_size": 1}


def _summary(pauc: float, folds: dict[str, float]) -> dict:
    return {"fold_auc": {k: 0.8 for k in folds}, "fold_auc_mean": 0.8, "fold_auc_std": 0.0,
            "fold_pauc": folds, "fold_pauc_mean": sum(folds.values()) / len(folds),
            "fold_pauc_std": 0.01, "oof_auc": 0.84, "oof_pauc": pauc}


# `isic stack` (runs/stack/metrics.json), before the one shape
STACK_BEFORE = {
    "best_of_methods": {**_summary(0.1085, {"0": 0.105, "1": 0.109, "2": 0.118}),
                        "method": "logistic",
                        "note": "optimistic: the method was chosen on these OOF scores"},
    "chosen": "logistic",
    "cv": {"inner_pauc": {"0": {"logistic": 0.112, "rank_mean": 0.105}},
           "kind": "nested", "picks": {"0": "rank_mean", "1": "logistic", "2": "logistic"},
           "scale": "per outer fold, the CDF of the stacker's scores on its training rows"},
    "input_names": ["lgbm", "xgb"],
    "inputs": {"lgbm": _summary(0.1059, {"0": 0.092, "1": 0.111, "2": 0.120}),
               "xgb": _summary(0.0953, {"0": 0.065, "1": 0.116, "2": 0.119})},
    "method": "auto",
    "methods": {"logistic": _summary(0.1085, {"0": 0.105, "1": 0.109, "2": 0.118}),
                "rank_mean": _summary(0.1021, {"0": 0.100, "1": 0.104, "2": 0.103})},
    "n_folds": 3,
    "oracle": {"oracle_pauc": 0.15, "stack_fraction": 0.7, "stack_pauc": 0.105},
    "positives": 83, "rows": 3000, "seconds": 3.672,
    "stack": _summary(0.1050, {"0": 0.101, "1": 0.102, "2": 0.113}),
    "weights": [0.26981741280541016, 0.5277872898865825]}


def _folder(tmp_path: Path, name: str, doc: dict, fold_hash: str | None = None) -> Path:
    rdir = tmp_path / "runs" / name
    rdir.mkdir(parents=True)
    (rdir / "metrics.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    if fold_hash:
        (rdir / "provenance.json").write_text(json.dumps({"inputs": {}, "fold_hash": fold_hash}))
    return rdir


def test_tabular_of_before_reads_in_the_one_shape(tmp_path: Path):
    rdir = _folder(tmp_path, "lgbm", TABULAR_BEFORE, fold_hash="f00d")
    r = read_result(rdir)
    assert (r.stage, r.name, r.n, r.n_pos, r.seconds) == ("tabular", "lgbm", 3000, 83, 3.71)
    assert (r.pauc, r.auc) == (TABULAR_BEFORE["oof_pauc"], TABULAR_BEFORE["oof_auc"])
    assert r.folds[1] == FoldScore(0.11098674521354931, 0.8342047128129602, None)
    assert r.fold_pauc_mean == pytest.approx(TABULAR_BEFORE["fold_pauc_mean"], abs=1e-15)
    assert r.fold_pauc_std == pytest.approx(TABULAR_BEFORE["fold_pauc_std"], abs=1e-15)
    assert r.fold_hash == "f00d"  # the tabular stage kept it in provenance.json only
    assert r.details == {"features_seconds": 0.44, "fit_seconds": 3.66, "n_features": 423}
    assert trained_folds(rdir) == [0, 1, 2]


def test_fused_image_of_before_reads_in_the_one_shape(tmp_path: Path):
    r = read_result(_folder(tmp_path, "vision_fused", IMAGE_BEFORE))
    assert (r.stage, r.name, r.n, r.n_pos) == ("image", "vision_fused", 3000, 83)
    assert (r.pauc, r.seconds, r.fold_hash) == (0.09918425845996254, 6.9, "aa7c1f317585c5b1")
    assert r.folds == {k: FoldScore(f["pauc"], f["auc"], 2.4)
                       for k, f in ((int(k), f) for k, f in IMAGE_BEFORE["folds"].items())}
    assert r.fold_pauc_mean == pytest.approx(IMAGE_BEFORE["mean_fold_pauc"], abs=1e-15)
    assert r.details["image_part"]["pauc"] == 0.01219936310204823  # the image term's score
    assert r.details["fold_records"]["1"]["n_valid"] == 998 and r.details["world_size"] == 1
    assert r.details["timings"]["train_seconds"] == 2.6 and r.details["init_from"] == (
        "vision_imgonly")
    assert not {"oof", "folds", "name", "mean_fold_pauc"} & set(r.details)
    assert trained_folds(tmp_path / "runs" / "vision_fused") == [0, 1, 2]


def test_stack_of_before_reads_in_the_one_shape(tmp_path: Path):
    r = read_result(_folder(tmp_path, "stack", STACK_BEFORE, fold_hash="beef"))
    assert (r.stage, r.name, r.n, r.n_pos, r.fold_hash) == ("stack", "stack", 3000, 83, "beef")
    assert (r.pauc, r.auc) == (0.1050, 0.84) and r.folds[2] == FoldScore(0.113, 0.8)
    d = r.details
    assert d["chosen"] == "logistic" and d["cv"]["picks"]["1"] == "logistic"
    assert d["best_of_methods"]["oof_pauc"] == d["methods"]["logistic"]["oof_pauc"] == 0.1085
    assert d["input_names"] == ["lgbm", "xgb"] and len(d["weights"]) == 2
    assert not {"stack", "rows", "positives", "seconds", "n_folds"} & set(d)


def test_calibrate_of_before_reads_without_scores(tmp_path: Path):
    doc = {"method": "platt", "prior": True, "rows": 3000, "positives": 83,
           "fold_hash": "aa", "models": {"lgbm": {"fold_pauc_max_shift": 0.0}}}
    r = read_result(_folder(tmp_path, "calibration", doc))
    assert (r.stage, r.pauc, r.n, r.folds, r.fold_hash) == ("calibrate", None, 3000, {}, "aa")
    assert r.details == {"method": "platt", "prior": True, "models": doc["models"]}
    with pytest.raises(ValueError, match="no per-fold entries"):
        trained_folds(tmp_path / "runs" / "calibration")


def test_the_one_shape_round_trips_with_its_format(tmp_path: Path):
    result = RunResult("image", "vision_x", 0.1, 0.8, 10, 2,
                       {2: FoldScore(None, None, 1.5), 0: FoldScore(0.2, 0.9)}, 4.0, "ab",
                       {"fold_records": {"0": {"steps": 3}}, "image_part": None})
    doc = result.to_dict()
    assert doc["format"] == FORMAT and list(doc["folds"]) == ["0", "2"]
    assert doc["folds"]["2"] == {"pauc": None, "auc": None, "seconds": 1.5}
    write_json(doc, tmp_path / "metrics.json")
    back = read_result(tmp_path)
    assert back == result and list(back.folds) == [0, 2]
    assert back.fold_pauc_mean == 0.2 and back.fold_pauc_std == 0.0  # a single-class fold: out
    assert trained_folds(tmp_path) == [0, 2]


@pytest.mark.parametrize(("text", "error", "match"), [
    (None, FileNotFoundError, r"metrics.json: the run's results .* copy the whole run folder"),
    ("{oops", ValueError, r"metrics.json: not valid JSON"),
    ("[1, 2]", ValueError, r"metrics.json: not a JSON object"),
    ('{"seconds": 3}', ValueError, r"metrics.json: not a run's metrics.json.*\(keys: seconds\)"),
    ('{"format": 99, "stage": "x"}', ValueError, r"metrics.json: metrics.json format 99"),
    ('{"format": 1, "stage": "x"}', ValueError, r"metrics.json: not a run result \(KeyError"),
])
def test_unreadable_results_name_the_file(tmp_path: Path, text: str | None, error: type,
                                          match: str):
    if text is not None:
        (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(error, match=match) as info:
        read_result(tmp_path)
    assert str(tmp_path) in str(info.value)


@dataclass
class _Config:
    """A stage's config as finish_run saves it (any dataclass)."""

    artifacts: str = "artifacts"


def test_finish_run_writes_the_result_and_returns_it_as_read(tmp_path: Path):
    started = time.perf_counter() - 2.0
    result = RunResult("stack", "stack", 0.1, 0.8, 10, 2, {0: FoldScore(0.1, 0.8)},
                       details={"cv": {"picks": {0: "logistic"}}})
    out = finish_run(result, tmp_path, _Config(str(tmp_path)), tmp_path, started,
                     provenance={"inputs": {}, "fold_hash": "ab", "conditions": {"threads": 1}},
                     track=False)
    assert out.seconds >= 2.0 and out.details["cv"]["picks"] == {"0": "logistic"}  # JSON's keys
    assert out == read_result(tmp_path) and out.folds == result.folds
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["conditions"]["stage"] == "stack" and prov["fold_hash"] == "ab"
    assert (tmp_path / "config.yaml").read_text() == f"artifacts: {tmp_path}\n"
    own = finish_run(RunResult("image", "v", None, None, 0, 0, seconds=7.5), tmp_path,
                     _Config(), tmp_path, started, track=False)
    assert own.seconds == 7.5  # a stage's own timing stays


def test_ledger_numbers_from_one_shape_for_every_stage():
    """What the ledger logs needs no stage name: pooled and per-fold scores, then every number
    of the details, nested keys dotted and a fold id as the step of a series."""
    r = RunResult("image", "vision_x", 0.1, 0.8, 10, 2,
                  {0: FoldScore(0.2, 0.9, 1.0), 1: FoldScore(None, None, 2.0)}, 4.0, "ab",
                  {"image_part": {"pauc": 0.05, "name": "x"}, "bad_images": ["a"],
                   "fusion": True, "fold_records": {"0": {"steps": 3}, "1": {"steps": 4}}})
    got = {(k, step): v for k, step, v in _numbers(r.ledger_metrics())}
    assert got[("oof_pauc", 0)] == 0.1 and got[("n_pos", 0)] == 2.0
    assert got[("fold_pauc", 0)] == 0.2 and ("fold_pauc", 1) not in got  # None: not logged
    assert got[("fold_seconds", 1)] == 2.0 and got[("image_part.pauc", 0)] == 0.05
    assert got[("fold_records.steps", 1)] == 4.0
    assert not [k for k, _ in got if k.startswith(("bad_images", "fusion", "image_part.name"))]
    assert list(_numbers({"models": {"lgbm": {"oof_pauc": 0.125}}})) == [
        ("models.lgbm.oof_pauc", 0, 0.125)]  # the report's numbers, as it hands them over
