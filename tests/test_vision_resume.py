"""A training run that stops, is changed or was saved long ago: what is resumed, what is
refused, what starts fresh (``isicstack.vision.train.run``)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import pytorch_lightning as lightning
import torch
import yaml
from vision_fixtures import N_TRAIN, copy_artifacts, image_cfg, make_vision_data

from isicstack.data.folds import make_folds
from isicstack.data.io import DataError, write_parquet
from isicstack.data.layout import folds_path, oof_path
from isicstack.settings.keys import flatten
from isicstack.vision.config import ImageConfig
from isicstack.vision.train import run


@pytest.fixture(scope="module")
def vision_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_vision_data(tmp_path_factory.mktemp("vision_resume"))


class _InterruptError(RuntimeError):
    pass


class _StopAtPass1(lightning.Callback):
    def on_train_epoch_start(self, trainer: lightning.Trainer, pl_module: object) -> None:
        if trainer.current_epoch == 1:
            raise _InterruptError("simulated crash after the first pass")


def test_interrupted_run_resumes_from_last_ckpt(vision_data: dict[str, Path], tmp_path: Path):
    art = copy_artifacts(vision_data, tmp_path / "art")
    cfg = image_cfg(vision_data, art, {"optim.steps": 6}, fusion=False, folds=[2], name="res")
    with pytest.raises(_InterruptError):
        run(cfg, callbacks=[_StopAtPass1()])
    last = art / "runs" / "vision_res" / "fold2" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step < 6
    [out] = run(cfg)
    record = out.details["fold_records"]["2"]
    assert record["resumed_from_step"] == step and record["steps"] == 6
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6
    [again] = run(cfg)  # finished fold: predictions reused, nothing retrained
    assert again.details["fold_records"]["2"] == record and again.folds == out.folds


class _StopWhenScoring(lightning.Callback):
    def on_predict_start(self, trainer: lightning.Trainer, pl_module: object) -> None:
        raise _InterruptError("simulated kill while scoring the held-out fold")


def test_run_killed_while_scoring_resumes_by_scoring(vision_data: dict[str, Path],
                                                     tmp_path: Path):
    """Training ended (last.ckpt holds the final weights only) but the fold was not scored:
    the rerun scores it with those weights instead of failing to restore an optimizer."""
    art = copy_artifacts(vision_data, tmp_path / "art")
    cfg = image_cfg(vision_data, art, {"optim.steps": 6}, fusion=False, folds=[2], name="kill")
    with pytest.raises(_InterruptError):
        run(cfg, callbacks=[_StopWhenScoring()])
    fold_dir = art / "runs" / "vision_kill" / "fold2"
    assert not (fold_dir / "fold.json").exists()
    weights = torch.load(fold_dir / "last.ckpt", map_location="cpu", weights_only=True)
    [out] = run(cfg)
    record = out.details["fold_records"]["2"]
    assert record["steps"] == 6 and record["resumed_from_step"] == 6
    after = torch.load(fold_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(torch.equal(after["state_dict"][k], v) for k, v in weights["state_dict"].items())
    [fresh] = run(replace(cfg, name="kill_ref", resume=False))  # same seed, scored in one go
    assert np.allclose(pl.read_parquet(art / "oof" / "vision_kill.parquet")["pred"],
                       pl.read_parquet(art / "oof" / "vision_kill_ref.parquet")["pred"])
    assert fresh.details["fold_records"]["2"]["steps"] == 6


def flat_config(path: Path) -> None:
    """Rewrite a saved image config.yaml with the flat keys of before the groups."""
    back = {new: old for old, new in ImageConfig.MOVED_KEYS.items()}
    doc = flatten(yaml.safe_load(path.read_text()))
    added = {"data.augment_on"}  # keys added since: a file of before has none of them
    path.write_text(yaml.safe_dump({back.get(k, k): v for k, v in doc.items()
                                    if k not in added}))


def test_unchanged_run_saved_with_flat_keys_resumes(vision_data: dict[str, Path], tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture):
    """A run whose config.yaml was written before the keys were grouped is the same config:
    its finished fold is reused (migrated before the resume check), not retrained."""
    art = copy_artifacts(vision_data, tmp_path / "art")
    cfg = image_cfg(vision_data, art, {"optim.steps": 2}, fusion=False, folds=[0], name="old")
    [first] = run(cfg)
    saved = art / "runs" / "vision_old" / "config.yaml"
    flat_config(saved)
    assert "model_name" in yaml.safe_load(saved.read_text())
    with caplog.at_level(logging.INFO):
        [again] = run(cfg)
    assert "starting fresh" not in caplog.text and "reusing its predictions" in caplog.text
    assert f"{saved}: written with flat keys" in caplog.text
    assert again.details["fold_records"]["0"] == first.details["fold_records"]["0"]
    assert yaml.safe_load(saved.read_text())["model"]["name"] == "test_resnet"  # rewritten


def test_changed_input_is_not_resumed(vision_data: dict[str, Path], tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture):
    """A finished fold is reused only while every input is unchanged; the log names the input."""
    art = copy_artifacts(vision_data, tmp_path / "art")
    cfg = image_cfg(vision_data, art, folds=[0], name="prov")
    [first] = run(cfg)
    oof = pl.read_parquet(oof_path(art, "lgbm"))
    write_parquet(oof.with_columns(pred=1 - pl.col("pred")), oof_path(art, "lgbm"))
    with caplog.at_level(logging.WARNING):
        [second] = run(cfg)
    assert "input tabular_oof changed" in caplog.text and "starting fresh" in caplog.text
    assert second.folds[0] != first.folds[0] or second.pauc != first.pauc


def test_init_from_needs_the_same_folds(vision_data: dict[str, Path], tmp_path: Path):
    art = copy_artifacts(vision_data, tmp_path / "art")
    run(image_cfg(vision_data, art, {"optim.steps": 3}, fusion=False, name="imgonly"))
    [fused] = run(image_cfg(vision_data, art, {"optim.steps": 2}, name="fused",
                            init_from="vision_imgonly"))
    assert fused.details["init_from"] == "vision_imgonly" and fused.n == N_TRAIN
    folds = pl.read_parquet(folds_path(art))
    other = make_folds(folds.select("isic_id", "patient_id", "target"), 3, 99)
    write_parquet(other, folds_path(art))
    tab = pl.read_parquet(oof_path(art, "lgbm")).drop("fold").join(
        other.select("isic_id", "fold"), on="isic_id")
    write_parquet(tab, oof_path(art, "lgbm"))  # the tabular scores follow the new folds
    with pytest.raises(DataError, match="init_from run was trained on other folds"):
        run(image_cfg(vision_data, art, {"optim.steps": 2}, name="fused",
                      init_from="vision_imgonly"))
    with pytest.raises(ValueError, match="init_from"):
        run(image_cfg(vision_data, art, fusion=False, init_from="vision_imgonly"))
