"""Offline inference and the Kaggle package: saved models reproduce the training stages' test
predictions from a test directory alone, batch by whole patients, stack, and fail loudly.

A tiny pipeline is trained once (2 GBDTs with few rounds, the image stage's smoke profile on two
folds, a stacker fitted on the OOF scores); then the training outputs other than ``runs/`` are
moved away, so a predict run that read OOF files or training test predictions would fail.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from isicstack.data.layout import SAMPLE_SUBMISSION, TEST_IMAGES, TEST_META
from isicstack.inference.config import PackageConfig, PredictConfig
from isicstack.inference.package import MANIFEST
from isicstack.inference.package import run as package
from isicstack.inference.predict import load_predictors, patient_batches, run
from isicstack.pipelines.cli import main
from isicstack.settings.layers import load_config
from isicstack.stacking.methods import Stacker, fit_stacker
from isicstack.tabular.config import ModelSpec, TabularConfig
from isicstack.tabular.cv import run as train_tabular
from isicstack.vision.config import ImageConfig
from isicstack.vision.train import run as train_image

VISION = "vision_test_resnet"
LEVEL1 = ["lgbm", "xgb", VISION]


def _test_dir(src: Path, dst: Path) -> Path:
    """Only the files of a Kaggle test directory (no train-metadata to read by mistake)."""
    dst.mkdir(parents=True)
    for name in (TEST_META, TEST_IMAGES, SAMPLE_SUBMISSION):
        shutil.copy2(src / name, dst / name)
    return dst


def _fit_stack(art: Path) -> Stacker:
    """A rank_weighted stacker on the OOF rows every level-1 model scored."""
    oof = [pl.read_parquet(art / "oof" / f"{n}.parquet").select("isic_id", "pred")
           for n in LEVEL1]
    rows = pl.read_parquet(art / "folds.parquet").select("isic_id", "target").join(
        oof[-1].select("isic_id"), on="isic_id", how="semi", maintain_order="left")
    X = np.column_stack([rows.join(o, on="isic_id", how="left", maintain_order="left")["pred"]
                         for o in oof])
    return fit_stacker("rank_weighted", X, rows["target"].to_numpy(), LEVEL1)


@pytest.fixture(scope="module")
def trained(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    art = root / "artifacts"
    art.mkdir()
    shutil.copy2(mini_artifacts / "folds.parquet", art / "folds.parquet")
    models = {"lgbm": ModelSpec("lgbm", num_rounds=20, params={"min_data_in_leaf": 5}),
              "xgb": ModelSpec("xgb", num_rounds=20)}
    train_tabular(TabularConfig(data_dir=str(mini_isic), artifacts=str(art), models=models,
                                bags=2, neg_ratio=10.0, threads=1))
    train_image(load_config(ImageConfig, "image", "smoke", [
        f"data_dir={mini_isic}", f"artifacts={art}", "runtime.accelerator=cpu", "folds=[0, 2]",
        "runtime.cpu_threads=1"]))  # 1 thread: OpenMP threads crawl on a shared 2-core box
    stack_dir = art / "runs" / "stack"
    stack_dir.mkdir(parents=True)
    (stack_dir / "stacker.json").write_text(json.dumps(_fit_stack(art).to_dict()))
    training = root / "training_outputs"  # out of the predict path's reach
    training.mkdir()
    for name in ("oof", "test", "folds.parquet"):
        shutil.move(art / name, training / name)
    return {"artifacts": art, "training": training, "test": _test_dir(mini_isic, root / "test"),
            "root": root}


def _cfg(trained: dict[str, Path], out: Path, **kw: object) -> PredictConfig:
    base = PredictConfig(data_dir=str(trained["test"]), artifacts=str(trained["artifacts"]),
                         out=str(out / "submission.csv"), preds_dir=str(out / "preds"),
                         batch_rows=50, image_batch_size=64, num_workers=0, accelerator="cpu",
                         cpu_threads=1)
    return replace(base, **kw)


def _aligned(path: Path, ids: pl.Series) -> np.ndarray:
    df = pl.read_parquet(path)
    return ids.to_frame().join(df, on="isic_id", how="left", maintain_order="left")["pred"] \
        .to_numpy()


@pytest.fixture(scope="module")
def predicted(trained: dict[str, Path]) -> tuple[dict, Path]:
    out = trained["root"] / "predict_out"
    return run(_cfg(trained, out)), out


def test_reproduces_training_test_predictions(trained, predicted):
    summary, out = predicted
    assert summary["batches"] > 1 and summary["stacker"] == "rank_weighted"
    ids = pl.read_csv(trained["test"] / TEST_META)["isic_id"]
    for name, tol in (("lgbm", 1e-6), ("xgb", 1e-6), (VISION, 1e-4)):
        got = _aligned(out / "preds" / f"{name}.parquet", ids)
        want = _aligned(trained["training"] / "test" / f"{name}.parquet", ids)
        assert not np.isnan(want).any()
        np.testing.assert_allclose(got, want, atol=tol, rtol=0, err_msg=name)
    stacker = Stacker.from_dict(json.loads(
        (trained["artifacts"] / "runs" / "stack" / "stacker.json").read_text()))
    X = np.column_stack([_aligned(trained["training"] / "test" / f"{n}.parquet", ids)
                         for n in stacker.inputs])
    sub = pl.read_csv(out / "submission.csv")
    assert sub.columns == ["isic_id", "target"] and sub["isic_id"].to_list() == ids.to_list()
    np.testing.assert_allclose(sub["target"].to_numpy(), stacker.predict(X), atol=1e-4)
    assert sub["target"].is_between(0, 1).all()


def test_fused_image_part_reproduces_training(trained, tmp_path: Path):
    """``<fused run>_image_part`` (a second-pass GBDT feature) is rebuilt from the fused run's
    folder, reads no tabular score, and equals the training stage's test file."""
    part = f"{VISION}_image_part"
    summary = run(_cfg(trained, tmp_path, stacker="", fallback=part))
    assert summary["models"] == [part]
    ids = pl.read_csv(trained["test"] / TEST_META)["isic_id"]
    got = _aligned(tmp_path / "preds" / f"{part}.parquet", ids)
    want = _aligned(trained["training"] / "test" / f"{part}.parquet", ids)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert not np.allclose(got, _aligned(trained["training"] / "test" / f"{VISION}.parquet", ids))
    assert not (tmp_path / "preds" / "lgbm.parquet").exists()  # no tabular dependency


def test_image_term_read_off_the_fused_runs_pass(trained, tmp_path: Path):
    """Scored together, a fused run's image term comes from the run's own pass over the crops
    (one CNN pass, not two) and equals the term scored alone."""
    from isicstack.inference.predict import resolve_models, share_image_passes
    from isicstack.vision.predict import ImagePartView

    part = f"{VISION}_image_part"
    alone = run(_cfg(trained, tmp_path / "alone", stacker="", fallback=part))
    both = run(_cfg(trained, tmp_path / "both", stacker="", fallback=part, models=[VISION]))
    assert alone["models"] == [part] and set(both["models"]) >= {part, VISION}
    ids = pl.read_csv(trained["test"] / TEST_META)["isic_id"]
    np.testing.assert_allclose(_aligned(tmp_path / "both" / "preds" / f"{part}.parquet", ids),
                               _aligned(tmp_path / "alone" / "preds" / f"{part}.parquet", ids),
                               atol=1e-6, rtol=0)

    cfg = _cfg(trained, tmp_path / "both", stacker="", fallback=part, models=[VISION])
    _, _, loaded = resolve_models(cfg, trained["test"] / TEST_IMAGES)
    order = [p.name for p in loaded]
    view = loaded[order.index(part)]
    assert isinstance(view, ImagePartView) and view.run is loaded[order.index(VISION)]
    assert order.index(VISION) < order.index(part)  # the run's pass comes first
    alone_loaded = resolve_models(_cfg(trained, tmp_path, stacker="", fallback=part),
                                  trained["test"] / TEST_IMAGES)[2]
    assert share_image_passes([part], alone_loaded) is alone_loaded  # alone: its own pass


@pytest.mark.parametrize("stacker, says", [("", "stacker disabled"), ("nope", "FALLBACK")])
def test_fallback_single_model(trained, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                               stacker: str, says: str):
    with caplog.at_level(logging.WARNING):
        summary = run(_cfg(trained, tmp_path, stacker=stacker, fallback="xgb", batch_rows=10_000))
    assert summary["models"] == ["xgb"] and summary["stacker"] is None
    assert says in caplog.text and "'xgb'" in caplog.text
    ids = pl.read_csv(trained["test"] / TEST_META)["isic_id"]
    sub = pl.read_csv(tmp_path / "submission.csv")
    want = _aligned(trained["training"] / "test" / "xgb.parquet", ids)
    np.testing.assert_allclose(sub["target"].to_numpy(), want, atol=1e-6)


def test_official_format_test_files(trained, kaggle_fixtures: Path, tmp_path: Path):
    """The 3-row test folder (synthetic, and the official files when present) gets scored."""
    test_dir = _test_dir(kaggle_fixtures, tmp_path / "t")
    summary = run(_cfg(trained, tmp_path, data_dir=str(test_dir)))
    assert summary["rows"] == 3
    sub = pl.read_csv(tmp_path / "submission.csv")
    sample = pl.read_csv(kaggle_fixtures / SAMPLE_SUBMISSION)
    assert sub.columns == sample.columns and sub["isic_id"].to_list() == sample["isic_id"].to_list()
    assert sub["target"].is_finite().all() and sub["target"].is_between(0, 1).all()


@pytest.mark.parametrize("missing", ["lgbm/models/fold1_bag0.txt", f"{VISION}/fold2/last.ckpt",
                                     f"{VISION}/fusion.json", "xgb/features.json"])
def test_missing_run_file_is_named(trained, tmp_path: Path, capsys, missing: str):
    art = tmp_path / "artifacts"
    shutil.copytree(trained["artifacts"], art)
    (art / "runs" / missing).unlink()
    rc = main(["predict", f"data_dir={trained['test']}", f"artifacts={art}",
               f"out={tmp_path / 'sub.csv'}", "accelerator=cpu", "num_workers=0", "cpu_threads=1"])
    assert rc == 1
    assert str(art / "runs" / missing) in capsys.readouterr().err
    assert not (tmp_path / "sub.csv").exists()


def test_patient_batches_keep_patients_whole():
    patient = pl.Series(["a", "b", "a", "c", "c", "c", "d", "b", "e"])
    batches = patient_batches(patient, 4)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(9))
    owner = {p: {i for i, b in enumerate(batches) if p in set(patient[b])} for p in "abcde"}
    assert all(len(v) == 1 for v in owner.values())
    assert all(len(b) <= 4 for b in batches)
    assert [len(b) for b in patient_batches(patient, 2)] == [2, 2, 3, 2]  # c alone (3 > 2)
    with pytest.raises(ValueError, match="batch_rows"):
        patient_batches(patient, 0)


def test_load_predictors_orders_dependencies():
    class Fake:
        def __init__(self, name: str, deps: list[str]) -> None:
            self.name, self.deps, self.files = name, deps, []

    graph = {"stack_in": ["img"], "img": ["gbdt"], "gbdt": [], "x": ["y"], "y": ["x"]}
    names = [p.name for p in load_predictors(["stack_in", "gbdt"],
                                             lambda n: Fake(n, graph[n]))]
    assert names == ["gbdt", "img", "stack_in"]
    with pytest.raises(ValueError, match="cycle: x -> y -> x"):
        load_predictors(["x"], lambda n: Fake(n, graph[n]))


def test_kaggle_package_runs_offline(trained, predicted, tmp_path: Path):
    out = tmp_path / "dist" / "kaggle"
    package(PackageConfig(artifacts=str(trained["artifacts"]), out_dir=str(out),
                          profile="smoke"))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["models"] == LEVEL1 and (out / "run_inference.py").is_file()
    shipped = {Path(f).as_posix() for f in manifest["files"]}
    assert {f"artifacts/runs/{VISION}/fold0/last.ckpt", "artifacts/runs/stack/stacker.json",
            "predict.yaml", "dataset-metadata.json"} <= shipped
    assert not any("best.ckpt" in f or "/oof" in f or "logs/" in f for f in shipped)
    assert len(list((out / "wheels").glob("isicstack-*.whl"))) == 1
    ckpt = torch.load(out / f"artifacts/runs/{VISION}/fold0/last.ckpt", weights_only=True)
    assert list(ckpt) == ["state_dict"]  # optimizer state stripped
    kaggle_input = _test_dir(trained["test"], tmp_path / "input" / "isic-2024-challenge")
    env = {**os.environ, "ISIC_INPUT": str(kaggle_input)}
    done = subprocess.run(
        [sys.executable, str(out / "run_inference.py"), "--out", str(tmp_path / "sub.csv"),
         "--site", str(tmp_path / "site"), "batch_rows=50", "accelerator=cpu", "cpu_threads=1"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"isicstack from {tmp_path / 'site' / 'isicstack'}" in done.stdout
    got = pl.read_csv(tmp_path / "sub.csv")
    want = pl.read_csv(predicted[1] / "submission.csv")
    assert got["isic_id"].to_list() == want["isic_id"].to_list()
    np.testing.assert_allclose(got["target"].to_numpy(), want["target"].to_numpy(), atol=1e-6)
    assert (tmp_path / "predictions" / f"{VISION}.parquet").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a kaggle package"):
        package(PackageConfig(artifacts=str(trained["artifacts"]), out_dir=str(tmp_path / "other"),
                              wheel=False))
