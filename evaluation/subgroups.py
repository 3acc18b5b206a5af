"""``isic subgroups``: pAUC, AUC, sensitivity and specificity by site, sex, age band, centre,
tile type and diagnosis, for the OOF scores of any stage (``evaluation.subgroup_tables``).

The same ``section`` feeds the report; as a command it writes ``<out>/subgroups.json`` and
``subgroups.md`` (``out`` = ``<artifacts>/subgroups``). The metadata columns come from the data
the folds were made from (``folds.json``) unless ``data_dir`` names another folder.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.folds import folds_data_dir, read_folds
from isicstack.data.io import DataError, write_json, write_text
from isicstack.data.layout import oof_path
from isicstack.data.predictions import discover, read_run_oof
from isicstack.data.sections import skipped
from isicstack.evaluation.config import SubgroupConfig, SubgroupsConfig
from isicstack.evaluation.subgroup_tables import group_frame, markdown, subgroup_tables
from isicstack.settings.layers import save_config

log = logging.getLogger(__name__)


def choose_models(artifacts: str | Path, models: list[str]) -> list[str]:
    """Configured names; else the stack when it exists (what is submitted), else every model."""
    if models:
        return list(models)
    if oof_path(artifacts, "stack").is_file():
        return ["stack"]
    return discover(artifacts)


def section(cfg: SubgroupConfig, artifacts: str | Path, data_dir: Path,
            folds: pl.DataFrame) -> dict[str, Any]:
    """Every chosen model's subgroup tables (models that fail to load are named, not fatal)."""
    labels, left_out = group_frame(data_dir, folds["isic_id"], cfg)
    if not labels:
        return skipped(f"no subgroup column found in {data_dir}: {left_out}")
    y = folds["target"].to_numpy().astype(np.int64)
    patients = folds["patient_id"].to_numpy()
    models, failed = {}, {}
    for name in choose_models(artifacts, cfg.models):
        try:
            pred = read_run_oof(artifacts, name, folds)
        except (DataError, FileNotFoundError) as err:
            failed[name] = str(err)
            continue
        models[name] = subgroup_tables(labels, y, pred, patients, cfg)
    return {"config": asdict(cfg), "models": models,
            "left_out": {**left_out, **{f"model {k}": v for k, v in failed.items()}}}


def run(cfg: SubgroupsConfig) -> dict[str, Any]:
    """Write the subgroup tables of the configured models."""
    folds = read_folds(cfg.artifacts)
    data_dir = folds_data_dir(cfg.data_dir, cfg.artifacts, cfg.profile)
    sec = section(cfg.cells, cfg.artifacts, data_dir, folds)
    out = Path(cfg.out) if cfg.out else Path(cfg.artifacts) / "subgroups"
    write_json(sec, out / "subgroups.json")
    write_text("\n".join(markdown(sec)) + "\n", out / "subgroups.md")
    save_config(cfg, out / "config.yaml")
    log.info("subgroups: wrote %s (%d model(s), data %s)", out / "subgroups.md",
             len(sec.get("models", {})), data_dir)
    return sec
