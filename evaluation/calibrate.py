"""``isic calibrate``: a calibrated risk for every model, fitted out of fold, saved as JSON.

Per model: the prior shift its training sampling implies (read from the run's saved
``config.yaml``: ``neg_ratio`` and ``scale_pos_weight`` of a GBDT, ``data.neg_ratio`` and
``optim.pos_weight`` of a CNN (flat ``neg_ratio`` / ``pos_weight`` in runs saved before the
image config's keys were grouped); 0 for the stack, whose level-2 model sees the data's own
class mix), then a monotone map (``method``). The calibrated OOF is nested: fold k is mapped by
a map fitted on the other folds (``calibration.fit.nested_calibrate``), so its Brier
score is honest.
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
import yaml

from isicstack.calibration.fit import fit_map, nested_calibrate, prior_shift
from isicstack.calibration.maps import CalMap, calibration_dir, map_path
from isicstack.calibration.scores import STACK, model_scores
from isicstack.data.folds import read_folds
from isicstack.data.io import DataError, write_json, write_parquet
from isicstack.data.layout import oof_path, resolve_data_dir, run_dir
from isicstack.data.predictions import STACK_PREFIX, discover
from isicstack.data.provenance import file_sha256, fold_hash
from isicstack.evaluation.calibration_report import oracle_prob, summarise
from isicstack.evaluation.config import CalibrateConfig
from isicstack.ledger.finish import finish_run
from isicstack.ledger.result import METRICS, RunResult
from isicstack.settings.keys import migrate, moved_keys
from isicstack.vision.config import ImageConfig

log = logging.getLogger(__name__)


def source_file(artifacts: str | Path, name: str) -> Path:
    """The run file a map belongs to: retraining rewrites it, which makes the map stale."""
    rdir = run_dir(artifacts, name)
    return rdir / ("stacker.json" if name == STACK else METRICS)


def _weight(params: dict[str, Any], pos: int, neg: int, neg_ratio: float) -> float:
    """The weight training gave each positive, relative to each negative it kept."""
    if params.get("auto_class_weights"):
        raise DataError("calibrate: CatBoost's auto_class_weights is not a fixed positive "
                        "weight; set calibrate prior=false for this model or use "
                        "scale_pos_weight")
    if params.get("is_unbalance"):  # LightGBM balances the rows it trains on: the kept ones
        kept = neg if neg_ratio <= 0 else min(neg, round(neg_ratio * pos))
        return kept / pos
    return float(params.get("scale_pos_weight", 1.0))


def _image_sampling(saved: dict[str, Any], path: Path) -> dict[str, Any]:
    """An image run's sampling keys (its ``config.yaml`` as read from ``path``), flat as the
    prior reads them (an older run's config with the flat keys is migrated first, so both read
    alike)."""
    doc = migrate(saved, moved_keys(ImageConfig), str(path))
    found = {"neg_ratio": (doc.get("data") or {}).get("neg_ratio"),
             "pos_weight": (doc.get("optim") or {}).get("pos_weight")}
    return {k: v for k, v in found.items() if v is not None}


def training_prior(artifacts: str | Path, name: str, y: np.ndarray) -> dict[str, Any]:
    """The log-odds factor training added to ``name``'s scores, and where it was read."""
    pos, neg = int(y.sum()), int(y.size - y.sum())
    cfg_path = run_dir(artifacts, name) / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else None
    if isinstance(cfg, dict) and "fusion" in cfg and "models" not in cfg:  # an image run
        cfg = _image_sampling(cfg, cfg_path)
    if not isinstance(cfg, dict) or "neg_ratio" not in cfg:
        why = ("level-2 model fitted on the data's own class mix" if name.startswith(STACK)
               else f"no training sampling recorded ({cfg_path} has no neg_ratio)")
        return {"shift": 0.0, "neg_ratio": 0.0, "pos_weight": 1.0, "why": why}
    if "models" in cfg:  # a tabular run: <model><suffix>
        suffix = cfg.get("suffix") or ""
        key = name[: -len(suffix)] if suffix and name.endswith(suffix) else name
        spec = (cfg["models"] or {}).get(key)
        if spec is None:
            raise DataError(f"{cfg_path}: no model {key!r} under 'models'")
        weight, kind = _weight(spec.get("params") or {}, pos, neg,
                               float(cfg["neg_ratio"])), "GBDT"
    else:
        weight, kind = float(cfg.get("pos_weight", 1.0)), "CNN"
    ratio = float(cfg["neg_ratio"])
    return {"shift": prior_shift(pos, neg, ratio, weight), "neg_ratio": ratio,
            "pos_weight": weight,
            "why": f"{kind}: {ratio:g} negatives per positive kept (0 = all), positives "
                   f"weighted {weight:g}"}


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
    """Configured names, else every OOF file (stack included, image-only parts left out)."""
    names = cfg.models or discover(cfg.artifacts, include_stack=True)
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
