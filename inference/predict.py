"""``isic predict``: offline inference from saved models on a test directory (the Kaggle path).

Reads only ``data_dir`` (``test-metadata.csv``, ``test-image.hdf5``, ``sample_submission.csv``)
and the run folders under ``artifacts/runs``: never training rows, OOF files or the training
stages' own test predictions, because the hidden test set (~500k lesions) exists only in the
offline notebook. Rows are scored in batches of whole patients (``batch_rows``) so memory stays
flat: every per-patient feature and fusion input is a window over one patient's rows. The level-1
scores feed the saved stacker (``runs/<stacker>/stacker.json``), or a single ``fallback`` model
when there is none; ``submission.csv`` is written through the validating ``write_submission``.

Calibrated risk: where ``isic calibrate`` saved a map for a model (``artifacts/calibration/
<model>.json``, checked against the run it was fitted for), its per-model file gains a ``prob``
column, and ``risk.csv`` holds the submitted model's score and risk. ``submission.csv`` keeps the
ranking score unless ``submit_calibrated: true`` (a monotone map: the same ranking).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from isicstack.calibration.maps import apply_maps
from isicstack.data.io import load_metadata, write_csv, write_json, write_parquet
from isicstack.data.layout import (
    IMAGE_PART_SUFFIX,
    SAMPLE_SUBMISSION,
    TEST_IMAGES,
    TEST_META,
    resolve_data_dir,
    run_dir,
    run_stage,
)
from isicstack.inference.config import PredictConfig
from isicstack.settings.layers import save_config
from isicstack.stacking.methods import Stacker
from isicstack.stacking.submission import write_submission
from isicstack.tabular.predict import BatchFeatures, TabularPredictor
from isicstack.vision.fold_table import require_crops
from isicstack.vision.predict import ImagePartView, ImagePredictor

log = logging.getLogger(__name__)

class Predictor(Protocol):
    """A loaded level-1 model: its name, the models it reads scores from, and a batch scorer."""

    name: str
    deps: list[str]
    files: list[Path]  # every run file it read (what a Kaggle package must ship)

    def predict(self, rows: pl.DataFrame, preds: dict[str, np.ndarray]) -> np.ndarray:
        """Scores of ``rows`` (whole patients), given the already computed ``preds`` of deps."""
        ...


def load_predictors(names: list[str], factory: Callable[[str], Predictor]) -> list[Predictor]:
    """``names`` and everything they depend on, loaded once each, dependencies first."""
    loaded: dict[str, Predictor] = {}

    def visit(name: str, chain: list[str]) -> None:
        if name in loaded:
            return
        if name in chain:
            raise ValueError(f"model dependency cycle: {' -> '.join([*chain, name])}")
        pred = factory(name)
        for dep in pred.deps:
            visit(dep, [*chain, name])
        loaded[name] = pred

    for name in names:
        visit(name, [])
    return list(loaded.values())

STACKER_FILE = "stacker.json"


def patient_batches(patient: pl.Series, batch_rows: int) -> list[np.ndarray]:
    """Row indices per batch: whole patients packed greedily up to ``batch_rows`` rows."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    groups = (patient.to_frame("p").with_row_index("i")
              .group_by("p", maintain_order=True).agg("i").get_column("i"))
    batches: list[np.ndarray] = []
    current: list[np.ndarray] = []
    size = 0
    for rows in groups:
        idx = rows.to_numpy()
        if current and size + len(idx) > batch_rows:
            batches.append(np.sort(np.concatenate(current)))
            current, size = [], 0
        current.append(idx)
        size += len(idx)
    if current:
        batches.append(np.sort(np.concatenate(current)))
    return batches


def load_stacker(cfg: PredictConfig) -> Stacker | None:
    """The saved level-2 model, or None (logged) when the config or the artifacts have none."""
    if not cfg.stacker:
        log.warning("predict: stacker disabled (stacker=''); submitting model %r alone",
                    cfg.fallback)
        return None
    path = run_dir(cfg.artifacts, cfg.stacker) / STACKER_FILE
    if not path.is_file():
        log.warning("predict: no stacker at %s; FALLBACK: submitting single model %r", path,
                    cfg.fallback)
        return None
    try:
        return Stacker.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (TypeError, KeyError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a valid stacker ({err})") from err


def make_factory(cfg: PredictConfig, images: Path) -> Callable[[str], Predictor]:
    """name -> loaded predictor of the stage that wrote the run (``data.layout.run_stage``)."""

    features = BatchFeatures()  # shared: GBDTs of one run build each batch's features once

    def factory(name: str) -> Predictor:
        if run_stage(cfg.artifacts, name) == "image":
            return ImagePredictor(cfg.artifacts, name, images, cfg.accelerator,
                                  cfg.image_batch_size, cfg.num_workers, cfg.cpu_threads)
        return TabularPredictor(cfg.artifacts, name, features)

    return factory


def resolve_models(cfg: PredictConfig, images: Path
                   ) -> tuple[Stacker | None, list[str], list[Predictor]]:
    """The stacker (or None), the submitted level-1 names and every predictor to run."""
    stacker = load_stacker(cfg)
    final = list(stacker.inputs) if stacker else [cfg.fallback]
    names = [*final, *cfg.models]
    return stacker, final, share_image_passes(
        names, load_predictors(names, make_factory(cfg, images)))


def share_image_passes(names: list[str], predictors: list[Predictor]) -> list[Predictor]:
    """When a fused run and its image term are both scored, the term is read off the run's
    own pass over the crops (``ImagePartView``) instead of a second pass of every fold's CNN;
    the order is rebuilt so the run comes first. A term scored alone keeps its own pass (it
    needs no tabular score)."""
    by_name = {p.name: p for p in predictors}
    pairs = [n for n in by_name if n.endswith(IMAGE_PART_SUFFIX)
             and n.removesuffix(IMAGE_PART_SUFFIX) in by_name]
    if not pairs:
        return predictors

    parts = [n for n in pairs if isinstance(by_name[n], ImagePredictor)
             and by_name[n].output != "pred"]
    for n in parts:
        by_name[n] = ImagePartView(by_name[n.removesuffix(IMAGE_PART_SUFFIX)])
    return load_predictors(names, by_name.__getitem__)


def score_all(test: pl.DataFrame, predictors: list[Predictor], batch_rows: int
              ) -> tuple[dict[str, np.ndarray], dict[str, float], int]:
    """Every predictor's scores for every test row (input order), batch by batch."""
    n = test.height
    out = {p.name: np.full(n, np.nan) for p in predictors}
    seconds = dict.fromkeys(out, 0.0)
    batches = patient_batches(test["patient_id"], batch_rows)
    for b, idx in enumerate(batches):
        rows = test[idx]
        preds: dict[str, np.ndarray] = {}
        for p in predictors:
            t0 = time.perf_counter()
            preds[p.name] = p.predict(rows, preds)
            seconds[p.name] += time.perf_counter() - t0
            out[p.name][idx] = preds[p.name]
        log.info("predict: batch %d/%d (%d rows) done", b + 1, len(batches), len(idx))
    return out, seconds, len(batches)


def run(cfg: PredictConfig) -> dict[str, Any]:
    """``isic predict``: level-1 scores, stacker, per-model files and ``submission.csv``."""
    t_start = time.perf_counter()
    data_dir = resolve_data_dir(cfg.data_dir, cfg.profile)
    meta_path = data_dir / TEST_META
    test = load_metadata(meta_path, "test")
    stacker, final, predictors = resolve_models(cfg, data_dir / TEST_IMAGES)
    if any(not isinstance(p, TabularPredictor) for p in predictors):  # image runs read crops
        require_crops(test["isic_id"], data_dir / TEST_IMAGES, "test")
    log.info("predict: %d test rows, models %s, %s", test.height, [p.name for p in predictors],
             f"stacker {stacker.method} over {final}" if stacker else f"single model {final[0]}")
    scores, seconds, n_batches = score_all(test, predictors, cfg.batch_rows)
    # the stacker's scores go under its run name: a calibration map is looked up by that name
    # (and checked against that run's stacker.json), never another stacker's
    submitted_name = cfg.stacker if stacker else final[0]
    if stacker:
        scores[submitted_name] = stacker.predict(
            np.column_stack([scores[n] for n in stacker.inputs]))
    risks, no_map = apply_maps(cfg.artifacts, scores, cfg.calibration, (submitted_name,))
    if submitted_name in no_map and cfg.calibration != "off":  # a stale map is worth a warning
        stale = "another training run" in no_map[submitted_name]
        log.log(logging.WARNING if stale else logging.INFO, "predict: no calibrated risk for "
                "%s: %s", submitted_name, no_map[submitted_name])
    if cfg.submit_calibrated and submitted_name not in risks:
        raise ValueError("predict: submit_calibrated=true but "
                         + no_map.get(submitted_name, "calibration is off"))
    submitted = (risks if cfg.submit_calibrated else scores)[submitted_name]

    preds_dir = Path(cfg.preds_dir) if cfg.preds_dir else Path(cfg.artifacts) / "predict"
    ids = test.get_column("isic_id")
    for name, pred in scores.items():  # `prob`: the calibrated risk, where a map exists
        write_parquet(pl.DataFrame({"isic_id": ids, "pred": pred,
                                    **({"prob": risks[name]} if name in risks else {})}),
                      preds_dir / f"{name}.parquet")
    if submitted_name in risks:  # the submitted model's score beside its risk, for reading
        write_csv(pl.DataFrame({"isic_id": ids, "score": scores[submitted_name],
                                "risk": risks[submitted_name]}), preds_dir / "risk.csv")
    out = Path(cfg.out) if cfg.out else Path(cfg.artifacts) / "submission.csv"
    sample = data_dir / SAMPLE_SUBMISSION
    write_submission(pl.DataFrame({"isic_id": ids, "pred": submitted}), meta_path,
                     sample if sample.is_file() else None, out)
    summary = {"rows": test.height, "models": [p.name for p in predictors],
               "stacker": stacker.method if stacker else None, "submitted": final,
               "batches": n_batches, "calibrated": sorted(risks),
               "risk_file": str(preds_dir / "risk.csv") if submitted_name in risks else None,
               "seconds": {k: round(v, 3) for k, v in seconds.items()},
               "total_seconds": round(time.perf_counter() - t_start, 3), "submission": str(out)}
    write_json(summary, preds_dir / "predict.json")
    save_config(cfg, preds_dir / "config.yaml")
    log.info("predict: wrote %s and %s (%.1fs)", out, preds_dir, summary["total_seconds"])
    return summary
