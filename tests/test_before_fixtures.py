"""What commit 3da1b5a (before the issue-28 refactor) saved, read by the current code.

``tests/fixtures/before_3da1b5a/`` holds a smoke run, its Kaggle package and the predictions the
old code made (README.md there: the commands). Why: a refactor that moves modules must still load
every model and record a user trained before it. The old package's models, scored by the current
offline predict path (what ``isic predict`` and the package's ``run_inference.py`` call), must
give the old per-model scores, risks and submission; the old run records must load through the
current readers and agree with the files they describe.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from isicstack.calibration.maps import read_map
from isicstack.data.layout import run_stage
from isicstack.data.metric import pauc
from isicstack.data.predictions import discover, read_run_oof, read_run_test
from isicstack.data.provenance import file_sha256, fold_hash, read_provenance
from isicstack.evaluation.config import CalibrateConfig
from isicstack.inference.config import PredictConfig
from isicstack.inference.package import MANIFEST, package_files
from isicstack.inference.predict import run
from isicstack.ledger.result import read_result, trained_folds
from isicstack.settings.layers import load_config, read_run_config
from isicstack.stacking.config import StackConfig
from isicstack.stacking.methods import Stacker
from isicstack.tabular.config import TabularConfig
from isicstack.vision.config import ImageConfig

FIXTURE = Path(__file__).parent / "fixtures" / "before_3da1b5a"
RUN = FIXTURE / "smoke_run"  # the smoke run's artifacts folder (records, OOF and test files)
OLD_PREDICT = FIXTURE / "old_predict"  # `isic predict` of the old code on the test split
RUNS = ["lgbm", "xgb", "vision_imgonly", "vision_fused", "lgbm_img", "xgb_img", "stack"]
CONFIGS = {"tabular": TabularConfig, "image": ImageConfig, "stack": StackConfig}
# Scores of the table alone: GBDT trees on the same features are exact on any CPU. Every other
# score reads a CNN (the *_img GBDTs take the CNN scores as features, the stacker all of them):
# bit-exact on the machine that made the fixture, but float32 convolutions may take other
# kernels on another CPU, so those are compared to 1e-6.
TABLE_ONLY = {"lgbm", "xgb"}
CNN_ATOL = 1e-6
# provenance roles whose files the fixture leaves out: training data, full training checkpoints
NOT_KEPT = {"train_meta", "images", "init_fold0", "init_fold1", "init_fold2"}


def _same(name: str, new: np.ndarray, old: np.ndarray) -> None:
    if name in TABLE_ONLY:
        np.testing.assert_array_equal(new, old, err_msg=name)
    else:
        np.testing.assert_allclose(new, old, rtol=0, atol=CNN_ATOL, err_msg=name)


@pytest.fixture(scope="module")
def fixture_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture folder copied: nothing a reader or the predict run writes lands in git."""
    dst = tmp_path_factory.mktemp("before_3da1b5a") / "fx"
    shutil.copytree(FIXTURE, dst)
    return dst


@pytest.fixture(scope="module")
def predicted(fixture_copy: Path) -> tuple[dict[str, Any], Path]:
    """The old package scored by the current code, as its run_inference.py does, on 1 thread."""
    package, out = fixture_copy / "kaggle", fixture_copy / "new_predict"
    overrides = [f"data_dir={fixture_copy / 'test_input'}", f"artifacts={package / 'artifacts'}",
                 f"out={out / 'submission.csv'}", f"preds_dir={out}", "num_workers=0",
                 "accelerator=cpu", "cpu_threads=1"]
    threads = torch.get_num_threads()
    try:  # the package's predict.yaml is the base layer, as in inference/kaggle_inference.py
        cfg = load_config(PredictConfig, "predict", "default", overrides, config_dir=package,
                          use_tuned=False)
        return run(cfg), out
    finally:
        torch.set_num_threads(threads)


def test_old_package_gives_the_old_predictions(predicted: tuple[dict[str, Any], Path]):
    """Per-model scores and calibrated risks, the submission and risk.csv of the old code."""
    result, out = predicted
    old = json.loads((OLD_PREDICT / "predict.json").read_text())
    for key in ("rows", "models", "stacker", "submitted", "calibrated"):
        assert result[key] == old[key], key
    files = sorted(p.name for p in OLD_PREDICT.glob("*.parquet"))
    assert files == sorted(p.name for p in out.glob("*.parquet"))
    assert len(files) == 8  # 7 level-1 models and the stack
    for name in files:
        new_df, old_df = pl.read_parquet(out / name), pl.read_parquet(OLD_PREDICT / name)
        assert new_df.columns == old_df.columns, name
        assert new_df["isic_id"].to_list() == old_df["isic_id"].to_list(), name
        for col in new_df.columns[1:]:  # pred, and prob where a calibration map applies
            _same(name.removesuffix(".parquet"), new_df[col].to_numpy(), old_df[col].to_numpy())
    for name, cols in (("submission.csv", ["target"]), ("risk.csv", ["score", "risk"])):
        new_df, old_df = pl.read_csv(out / name), pl.read_csv(OLD_PREDICT / name)
        assert new_df["isic_id"].to_list() == old_df["isic_id"].to_list(), name
        for col in cols:
            _same(name, new_df[col].to_numpy(), old_df[col].to_numpy())


def test_package_scores_match_the_training_stages(predicted: tuple[dict[str, Any], Path]):
    """The offline path gives the test scores the old training stages wrote (test/<name>)."""
    _, out = predicted
    for name in RUNS:
        new = pl.read_parquet(out / f"{name}.parquet")
        old = read_run_test(RUN, name, new["isic_id"])
        _same(name, new["pred"].to_numpy(), old)
    old_sub = pl.read_csv(RUN / "submission.csv")
    new_sub = pl.read_csv(out / "submission.csv")
    assert new_sub["isic_id"].to_list() == old_sub["isic_id"].to_list()
    _same("stack", new_sub["target"].to_numpy(), old_sub["target"].to_numpy())


def test_current_packager_ships_the_old_package_files(fixture_copy: Path):
    """The current kaggle-package selection over the old runs is the old package's file list."""
    package = fixture_copy / "kaggle"
    manifest = json.loads((package / MANIFEST).read_text())
    pcfg = load_config(PredictConfig, "predict", "default",
                       [f"artifacts={package / 'artifacts'}", "cpu_threads=1"],
                       config_dir=package, use_tuned=False)
    threads = torch.get_num_threads()
    try:
        info, files = package_files(pcfg)
    finally:
        torch.set_num_threads(threads)
    for key in ("models", "submitted", "stacker", "calibrated"):
        assert info[key] == manifest[key], key
    shipped = {f"artifacts/{p.relative_to(package / 'artifacts')}" for p in files}
    assert shipped == {f for f in manifest["files"] if f.startswith("artifacts/")}
    assert manifest["wheel"] is None  # built with wheel=false: the test runs the current code


@pytest.mark.parametrize("name", RUNS)
def test_old_run_records_read(name: str):
    """config.yaml, provenance.json and metrics.json of each old run, by the current readers."""
    rdir = RUN / "runs" / name
    prov = read_provenance(rdir)
    stage = prov["conditions"]["stage"]
    assert stage == run_stage(RUN, name)
    cfg = read_run_config(CONFIGS[stage], rdir)
    assert cfg.profile == "smoke" and cfg.artifacts == "/tmp/fx/art"
    metrics = json.loads((rdir / "metrics.json").read_text())  # the old shape, as written
    result = read_result(rdir)  # read through the one result type
    assert (result.stage, result.name, result.fold_hash) == (stage, name, prov["fold_hash"])
    assert sorted(result.folds) == [0, 1, 2] and result.n == metrics.get("rows", result.n)
    if stage == "tabular":
        assert metrics["model"] == name and cfg.models[cfg.model_key(name)].enabled
        assert trained_folds(rdir) == [0, 1, 2]
        assert cfg.features.oof_names == (
            ["vision_imgonly", "vision_fused_image_part"] if cfg.suffix == "_img" else [])
    elif stage == "image":
        assert f"vision_{cfg.name}" == name and cfg.model.name == "test_resnet"
        assert cfg.fusion == (name == "vision_fused")
        assert trained_folds(rdir) == [0, 1, 2]
    else:
        stacker = Stacker.from_dict(json.loads((rdir / "stacker.json").read_text()))
        assert cfg.method == metrics["method"] == "auto" and metrics["chosen"] == stacker.method
        assert stacker.inputs == metrics["input_names"] and stacker.weights == metrics["weights"]
    assert prov["fold_hash"] == fold_hash(pl.read_parquet(RUN / "folds.parquet"))
    # the recorded OOF pAUC is the current metric of the old OOF file
    folds = pl.read_parquet(RUN / "folds.parquet")
    oof = read_run_oof(RUN, name, folds)
    assert pauc(folds["target"].to_numpy(), oof) == pytest.approx(result.pauc, abs=1e-12)


@pytest.mark.parametrize("name", RUNS)
def test_old_provenance_names_the_fixture_files(name: str):
    """Every input the run recorded has the recorded content in the fixture, but the training
    data and the full training checkpoints (the package keeps those stripped to weights)."""
    rdir = RUN / "runs" / name
    prov = read_provenance(rdir)
    cfg = read_run_config(CONFIGS[prov["conditions"]["stage"]], rdir)
    roots = {Path(cfg.artifacts): RUN, Path(cfg.data_dir): FIXTURE / "test_input"}
    kept = set()
    for role, rec in prov["inputs"].items():
        path = Path(rec["path"])
        here = next(dst / path.relative_to(src) for src, dst in roots.items()
                    if path.is_relative_to(src))
        if here.is_file():
            assert file_sha256(here) == rec["sha256"], role
            kept.add(role)
    assert kept == set(prov["inputs"]) - NOT_KEPT and "folds" in kept


def test_old_oof_test_and_calibration_files_read():
    """Every old OOF and test file passes the current reader's checks; the saved stacker gives
    the old stack test scores; each calibration map belongs to the run files it was fitted on."""
    folds = pl.read_parquet(RUN / "folds.parquet")
    names = discover(RUN, include_stack=True, include_parts=True)
    assert names == sorted([*RUNS, "vision_fused_image_part"])
    ids = pl.read_csv(FIXTURE / "test_input" / "test-metadata.csv")["isic_id"]
    test = {n: read_run_test(RUN, n, ids) for n in names}
    for name in names:
        assert read_run_oof(RUN, name, folds).shape == (folds.height,)
    stacker = Stacker.from_dict(json.loads((RUN / "runs" / "stack" / "stacker.json").read_text()))
    np.testing.assert_allclose(stacker.predict(np.column_stack([test[n] for n in stacker.inputs])),
                               test["stack"], rtol=0, atol=1e-12)
    cal = read_run_config(CalibrateConfig, RUN / "calibration")
    assert cal.method == "platt" and cal.prior
    for name in sorted(set(RUNS) | {"vision_fused"}):
        cmap, why = read_map(RUN, name)
        assert cmap is not None, why
