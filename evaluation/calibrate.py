"""``isic calibrate``: a calibrated risk for every model, fitted out of fold, saved as JSON.

Per model: the prior shift its training sampling implies (``calibration.prior``, read from the
run's saved ``config.yaml``), then a monotone map (``method``). The calibrated OOF is nested:
fold k is mapped by a map fitted on the other folds (``calibration.fit.nested_calibrate``), so
its Brier score is honest.
The map fitted on every OOF row is what ``isic predict``, the Kaggle package and the app apply
(read through ``calibration/maps.py``, which also says where the maps live).

The stack is calibrated on the scale ``stacker.json`` outputs at inference: the chosen method's
own CV scores, recomputed here. Its nested OOF (``oof/stack.parquet``) maps each fold through
that fold's own CDF, a scale that exists only in the CV.

Outputs (never under ``oof/``, which the stack reads as its inputs): ``<out>/<model>.json``
(map, per-fold maps, prior, the run file it belongs to by SHA-256), ``<out>/oof/<model>.parquet``
(``isic_id, fold, pred`` calibrated, ``raw``, ``prior``) and ``<out>/metrics.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.calibration.fit import fit_map, nested_calibrate
from isicstack.calibration.maps import CalMap, calibration_dir, map_path
from isicstack.calibration.prior import training_prior
from isicstack.calibration.scores import STACK, model_scores
from isicstack.data.folds import read_folds
from isicstack.data.io import write_json, write_parquet
from isicstack.data.layout import oof_path, resolve_data_dir, run_dir
from isicstack.data.predictions import STACK_PREFIX, discover
from isicstack.data.provenance import file_sha256, fold_hash
from isicstack.evaluation.calibration_report import oracle_prob, summarise
from isicstack.evaluation.config import CalibrateConfig
from isicstack.ledger.finish import finish_run
from isicstack.ledger.result import METRICS, RunResult

log = logging.getLogger(__name__)


def source_file(artifacts: str | Path, name: str) -> Path:
    """The run file a map belongs to: retraining rewrites it, which makes the map stale."""
    rdir = run_dir(artifacts, name)
    return rdir / ("stacker.json" if name == STACK else METRICS)


def calibrate_model(cfg: CalibrateConfig, name: str, folds: pl.DataFrame,
                    folder: Path) -> dict[str, np.ndarray]:
    """Fit, apply out of fold and save the map of one model; its raw/prior/calibrated OOF."""
    y = folds.get_column("target").to_numpy().astype(np.int64)
    fold = folds.get_column("fold").to_numpy()
    raw = model_scores(cfg.artifacts, name, folds)
    prior = training_prior(cfg.artifacts, name, y) if cfg.prior else {
        "shift": 0.0, "why": "prior correction off (prior: false)"}
    calibrated, fold_maps = nested_calibrate(raw, y, fold, cfg.method, prior["shift"])
    all_rows = fit_map(raw, y, cfg.method, prior["shift"])
    prior_only = CalMap("prior", prior["shift"], all_rows.scale).apply(raw)
    src = source_file(cfg.artifacts, name)
    write_json({"model": name, "map": all_rows.to_dict(), "prior": prior,
                "fold_maps": {str(k): m.to_dict() for k, m in fold_maps.items()},
                "scores": "the chosen method's own CV (stacker.json's scale)"
                          if name == STACK else f"oof/{name}.parquet",
                "source": {"file": str(src.relative_to(cfg.artifacts)) if src.is_file()
                           else None, "sha256": file_sha256(src) if src.is_file() else None},
                "oof_sha256": file_sha256(oof_path(cfg.artifacts, name)),
                "fold_hash": fold_hash(folds)}, map_path(folder, name))
    write_parquet(pl.DataFrame({"isic_id": folds.get_column("isic_id"),
                                "fold": pl.Series(fold, dtype=pl.Int16), "pred": calibrated,
                                "raw": raw, "prior": prior_only}),
                  folder / "oof" / f"{name}.parquet")
    log.info("calibrate %s: prior shift %.3f (%s); %s map on %d rows", name, prior["shift"],
             prior["why"], all_rows.method, len(y))
    return {"raw": raw, "prior": prior_only, "calibrated": calibrated}


def choose_models(cfg: CalibrateConfig) -> list[str]:
    """Configured names, else every OOF file (stack and the few-lesions `*_solo` models
    included, image-only parts left out)."""
    names = cfg.models or discover(cfg.artifacts, include_stack=True, include_solo=True)
    names = [n for n in names if n == STACK or not n.startswith(STACK_PREFIX)]
    if not names:
        raise FileNotFoundError(f"{oof_path(cfg.artifacts, '*')}: no OOF predictions to "
                                "calibrate; run train-tabular / stack first")
    return names


def run(cfg: CalibrateConfig) -> list[RunResult]:
    """``isic calibrate``: maps, calibrated OOF and a Brier / log-loss summary per model; its
    result (one folder, the maps' own; no pooled OOF score: ``details["models"]`` per model)."""
    started = time.perf_counter()
    folds = read_folds(cfg.artifacts)
    folder = calibration_dir(cfg.artifacts, cfg.out)
    y = folds.get_column("target").to_numpy().astype(np.int64)
    patients = folds.get_column("patient_id").to_numpy()
    oracle = oracle_prob(resolve_data_dir(cfg.data_dir, cfg.profile), folds)
    models: dict[str, Any] = {}
    for name in choose_models(cfg):
        cols = calibrate_model(cfg, name, folds, folder)
        models[name] = summarise(y, cols, patients, folds.get_column("fold").to_numpy(),
                                 oracle, cfg.n_boot, cfg.seed)
        s = models[name]["losses"]
        log.info("calibrate %s: Brier %.5f -> %.5f%s", name, s["raw"]["brier"],
                 s["calibrated"]["brier"],
                 f" (oracle {s['oracle']['brier']:.5f})" if "oracle" in s else "")
    result = RunResult("calibrate", folder.name, None, None, int(y.size), int(y.sum()),
                       fold_hash=fold_hash(folds),
                       details={"method": cfg.method, "prior": cfg.prior, "models": models})
    return [finish_run(result, folder, cfg, cfg.artifacts, started, track=False)]
