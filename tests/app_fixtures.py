"""Saved models for the web-app tests: LightGBM, an image-only run and a logistic stacker on the
session's synthetic mini-ISIC (20 rounds, 1 bag; the image smoke profile; one CPU thread).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from isicstack.settings.layers import load_config
from isicstack.stacking.config import StackConfig
from isicstack.stacking.stack import run as stack
from isicstack.tabular.config import ModelSpec, TabularConfig
from isicstack.tabular.cv import run as train_tabular
from isicstack.vision.config import ImageConfig
from isicstack.vision.train import run as train_image


def make_clinic_artifacts(mini_isic: Path, mini_artifacts: Path, art: Path,
                          calibrate: bool = False) -> Path:
    """``art`` with folds, runs/{lgbm, vision_imgonly, stack} and their OOF scores (and, with
    ``calibrate``, their calibration maps: the page then shows a calibrated risk)."""
    art.mkdir(parents=True)
    for name in ("folds.parquet", "folds.json"):
        shutil.copy2(mini_artifacts / name, art / name)
    lgbm = ModelSpec("lgbm", num_rounds=20, params={"min_data_in_leaf": 5})
    train_tabular(TabularConfig(data_dir=str(mini_isic), artifacts=str(art),
                                models={"lgbm": lgbm}, bags=1, neg_ratio=10.0, threads=1))
    train_image(load_config(ImageConfig, "image", "smoke", [
        f"data_dir={mini_isic}", f"artifacts={art}", "runtime.accelerator=cpu",
        "runtime.cpu_threads=1", "fusion=false", "name=imgonly"]))
    stack(StackConfig(data_dir=str(mini_isic), artifacts=str(art), method="logistic",
                      submission=False))
    if calibrate:
        from isicstack.evaluation.calibrate import run as calibrate_run
        from isicstack.evaluation.config import CalibrateConfig

        calibrate_run(CalibrateConfig(artifacts=str(art), data_dir=str(mini_isic), n_boot=0))
    return art
