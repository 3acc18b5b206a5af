"""The scores a calibration map is fitted on and applied to, per model: the OOF file, or for the
stack the scale ``stacker.json`` outputs at inference (its nested OOF maps each fold through that
fold's own CDF, a scale that exists only in the CV). Read by ``isic calibrate``, the report and
the app, so they map the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from isicstack.data.layout import run_dir
from isicstack.data.predictions import read_run_oof
from isicstack.settings.layers import read_run_config
from isicstack.stacking.config import StackConfig
from isicstack.stacking.methods import Stacker, cross_validate

STACK = "stack"


def stack_scores(artifacts: str | Path, folds: pl.DataFrame) -> np.ndarray:
    """The stack's OOF on its inference scale: the saved method's own CV over its inputs."""
    rdir = run_dir(artifacts, STACK)
    st = Stacker.from_dict(json.loads((rdir / "stacker.json").read_text(encoding="utf-8")))
    saved = (rdir / "config.yaml").is_file()
    cfg = read_run_config(StackConfig, rdir) if saved else StackConfig()
    X = np.column_stack([read_run_oof(artifacts, n, folds) for n in st.inputs])
    y = folds.get_column("target").to_numpy().astype(np.int64)
    return cross_validate(st.method, X, y, folds.get_column("fold").to_numpy(), st.inputs,
                          cfg.n_quantiles, cfg.logistic_c).oof


def model_scores(artifacts: str | Path, name: str, folds: pl.DataFrame) -> np.ndarray:
    """The scores a map is fitted on: the OOF file, or for the stack its inference scale."""
    if name == STACK and (run_dir(artifacts, STACK) / "stacker.json").is_file():
        return stack_scores(artifacts, folds)
    return read_run_oof(artifacts, name, folds)
