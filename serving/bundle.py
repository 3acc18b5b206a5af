"""``isic bundle``: the deployable model, one versioned folder (``dist/bundle``).

The Kaggle package's packager (:func:`isicstack.inference.package.pack_models`) copies the run
files prediction reads, their calibration maps and ``predict.yaml``; this adds ``bundle.json``
(version, per-file SHA-256, content hash, fold hash, conditions, each scorer's CV and operating
point) and ``reference.json`` (:mod:`isicstack.serving.reference`: the training data as the
monitor compares a deployed model's inputs with it). Two scorers: ``full`` (the stack, or the
single submitted model) and ``solo`` (GBDTs without patient context, for patients with fewer
than ``max_lesions`` lesions in a request; absent when its run is not there). Built beside the
target and swapped in (a folder that is not a bundle is never deleted); optionally registered
in the MLflow Model Registry (:mod:`isicstack.serving.registry`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.calibration.config import OperatingPointConfig
from isicstack.calibration.operating_point import operating_point
from isicstack.calibration.scores import model_scores
from isicstack.data.crops import CropStore
from isicstack.data.folds import read_folds
from isicstack.data.io import load_metadata, write_json
from isicstack.data.layout import (
    ORACLE,
    TRAIN_IMAGES,
    TRAIN_META,
    oof_path,
    resolve_data_dir,
    run_dir,
)
from isicstack.data.provenance import file_sha256, fold_hash, read_provenance
from isicstack.inference.config import PredictConfig
from isicstack.inference.package import building_dir, pack_models, swap_in
from isicstack.serving.config import MODEL_NAME, BundleConfig
from isicstack.serving.manifest import (
    BUNDLE_FILE,
    FORMAT,
    REFERENCE_FILE,
    RESEARCH_USE,
    content_hash,
)
from isicstack.serving.reference import crop_stats, reference
from isicstack.serving.registry import register
from isicstack.settings.layers import load_config

log = logging.getLogger(__name__)


def run_cv(artifacts: str | Path, name: str) -> dict[str, float | None]:
    """OOF pAUC and AUC of run ``name`` as its ``metrics.json`` records them."""
    path = run_dir(artifacts, name) / "metrics.json"
    if not path.is_file():
        return {"pauc": None, "auc": None}
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {"pauc": doc.get("pauc"), "auc": doc.get("auc")}


def scorer(artifacts: str | Path, name: str, inputs: list[str], folds: pl.DataFrame,
           target_tpr: float, calibrated: bool) -> tuple[dict[str, Any], np.ndarray]:
    """A ``scorers`` entry of ``bundle.json`` and its OOF scores, on the scale the scorer
    outputs (the stacker's inference scale, as ``app/service.py::operating_point``)."""
    pred = model_scores(artifacts, name, folds)
    found = operating_point(folds["target"].to_numpy(), pred, folds["patient_id"].to_numpy(),
                            OperatingPointConfig(target_tpr=target_tpr, n_boot=0))
    op = found["point"]
    entry = {"name": name, "inputs": inputs, "cv": run_cv(artifacts, name),
             "operating_point": {"target_tpr": target_tpr, "threshold": op["threshold"],
                                 "tpr": op["recall"], "fpr": 1.0 - op["specificity"],
                                 "review_rate": op["review_per_1000"] / 1000.0,
                                 "rows": found["rows"], "patients": found["patients"]},
             "calibrated": calibrated}
    return entry, pred


def solo_run(cfg: BundleConfig) -> str:
    """The solo run to ship, or "" (none configured, or its run / OOF file is missing)."""
    if not cfg.solo:
        return ""
    if not (run_dir(cfg.artifacts, cfg.solo).is_dir() and oof_path(cfg.artifacts, cfg.solo)
            .is_file()):
        log.warning("bundle: no solo run %r in %s (`make train-tabular-solo`): patients with "
                    "few lesions will be scored by the full model", cfg.solo, cfg.artifacts)
        return ""
    return cfg.solo


def crop_sample(data_dir: Path, ids: list[str], n: int, seed: int) -> list[dict[str, float]]:
    """:func:`crop_stats` of a seeded sample of <= ``n`` training crops ([] without crops)."""
    path = data_dir / TRAIN_IMAGES
    if not path.is_file():
        log.warning("bundle: no %s: reference.json has no crop statistics", path)
        return []
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(ids, min(n, len(ids)), replace=False).tolist())
    with CropStore(path) as store:
        return [crop_stats(store.read(i)) for i in pick]


def conditions(artifacts: str | Path, name: str) -> dict[str, Any]:
    """What the full scorer's run recorded it ran under (provenance.json), else {}."""
    try:
        return read_provenance(run_dir(artifacts, name)).get("conditions") or {}
    except (FileNotFoundError, ValueError):
        return {}


def manifest(cfg: BundleConfig, pcfg: PredictConfig, packed: dict[str, Any], solo: str,
             folds: pl.DataFrame) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``bundle.json`` (without the reference entry) and each scorer's OOF scores."""
    stacked = packed["stacker"] is not None
    full = pcfg.stacker if stacked else pcfg.fallback
    art = cfg.artifacts
    scorers, scores = {}, {}
    scorers["full"], scores["full"] = scorer(
        art, full, packed["submitted"], folds, cfg.target_tpr,
        ("stack" if stacked else full) in packed["calibrated"])
    if solo:
        scorers["solo"], scores["solo"] = scorer(art, solo, [solo], folds, cfg.target_tpr,
                                                 solo in packed["calibrated"])
        scorers["solo"]["max_lesions"] = cfg.max_lesions
    created = datetime.now(UTC)
    chash = content_hash(packed["files"])
    doc = {"format": FORMAT, "name": MODEL_NAME,
           "version": f"{created:%Y%m%dT%H%M%S}-{chash[:8]}",
           "created": created.isoformat(timespec="seconds"), "content_hash": chash,
           "files": packed["files"], "fold_hash": fold_hash(folds),
           "conditions": conditions(art, full), "models": packed["models"],
           "submitted": packed["submitted"], "stacker": packed["stacker"],
           "scorers": scorers, "research_use": RESEARCH_USE}
    return doc, scores


def run(cfg: BundleConfig) -> Path:
    """Build ``out_dir`` (then register it when ``register`` says so) and return it."""
    pcfg = load_config(PredictConfig, "predict", cfg.predict_profile or cfg.profile,
                       [*cfg.predict_overrides, f"artifacts={cfg.artifacts}"])
    solo = solo_run(cfg)
    folds = read_folds(cfg.artifacts)
    data_dir = resolve_data_dir(cfg.data_dir, cfg.profile)
    train = load_metadata(data_dir / TRAIN_META, "train")
    out = Path(cfg.out_dir)
    tmp = building_dir(out)
    packed = pack_models(pcfg, tmp, [solo] if solo else [], what="bundle")
    doc, scores = manifest(cfg, pcfg, packed, solo, folds)
    # what it was trained on: a Space's licence follows it (ISIC data: CC BY-NC 4.0)
    doc["training_data"] = {"train_meta": file_sha256(data_dir / TRAIN_META),
                            "synthetic": (data_dir / ORACLE).is_file()}
    crops = crop_sample(data_dir, train["isic_id"].to_list(), cfg.sample, cfg.seed)
    thresholds = {k: s["operating_point"]["threshold"] for k, s in doc["scorers"].items()}
    write_json(reference(train, crops, scores, thresholds, cfg.sample, cfg.seed),
               tmp / REFERENCE_FILE)
    doc["reference"] = {"file": REFERENCE_FILE, "sha256": file_sha256(tmp / REFERENCE_FILE)}
    write_json(doc, tmp / BUNDLE_FILE)  # last: a folder with it is a whole bundle
    swap_in(tmp, out, BUNDLE_FILE, "bundle")
    full = doc["scorers"]["full"]
    log.info("bundle: %s version %s (%d files; full = %s, threshold %.4g, review rate %.3f%s)",
             out, doc["version"], len(doc["files"]), full["name"],
             full["operating_point"]["threshold"], full["operating_point"]["review_rate"],
             f"; solo = {solo} below {cfg.max_lesions} lesions" if solo else "; no solo model")
    if cfg.register == "on":
        register(out, cfg.artifacts)
    elif cfg.register == "auto" and importlib.util.find_spec("mlflow") is None:
        log.info("bundle: not registered (MLflow is the optional extra `mlflow`)")
    elif cfg.register == "auto":
        try:  # auto: the bundle stands without the registry, as a run without the ledger
            register(out, cfg.artifacts)
        except Exception as err:
            log.warning("bundle: %s was built but not registered (%s: %s); `register=on` "
                        "makes this an error", out, type(err).__name__, err)
    return out
