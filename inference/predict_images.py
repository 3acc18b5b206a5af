"""``isic predict-images``: score any crops with a saved image-only run -> ``isic_id,pred``.

Input is a Kaggle-layout HDF5 (key = isic_id, value = JPEG bytes) or a folder of JPEGs (the file
stem is the id). Ids are scored in chunks of ``chunk_rows`` and appended to a temporary CSV that
is renamed into place at the end, so memory stays flat in the number of crops and an interrupted
run leaves no half-written output. Every fold model of the run is averaged, as in training. A
corrupt or missing crop stops the run with its ``isic_id`` and file; a fused run needs tabular
scores and is refused (use ``isic predict``).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.data.io import atomic_path
from isicstack.inference.config import PredictImagesConfig
from isicstack.settings.chain import image_only_run
from isicstack.vision.predict import ImagePredictor

log = logging.getLogger(__name__)


def output_path(cfg: PredictImagesConfig) -> Path:
    """Where the scores go."""
    return Path(cfg.out) if cfg.out else Path(cfg.artifacts) / "predict_images" / f"{cfg.name}.csv"


def run(cfg: PredictImagesConfig) -> dict[str, Any]:
    """Score every crop of ``cfg.images``; write ``isic_id,pred`` in the source's key order."""
    cfg = replace(cfg, name=image_only_run(cfg.name))
    if not cfg.images:
        raise ValueError("predict-images: set images=<HDF5 file or JPEG folder>")
    if cfg.chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {cfg.chunk_rows}")
    images = Path(cfg.images)
    if not images.exists():
        raise FileNotFoundError(f"{images}: no such HDF5 file or image folder")
    t0 = time.perf_counter()
    predictor = ImagePredictor(cfg.artifacts, cfg.name, images, cfg.accelerator,
                               cfg.batch_size, cfg.num_workers, cfg.cpu_threads)
    if predictor.fusion is not None:
        raise ValueError(f"{cfg.name}: a fused run needs the tabular stage's scores for each "
                         "lesion; score crops alone with an image-only run (fusion=false), or "
                         "use `isic predict` on a test directory")
    ids = predictor.source.keys()
    if not ids:
        raise ValueError(f"{images}: no crops to score")
    out = output_path(cfg)
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["isic_id", "pred"])
        for start in range(0, len(ids), cfg.chunk_rows):
            chunk = ids[start:start + cfg.chunk_rows]
            pred = predictor.predict(pl.DataFrame({"isic_id": chunk}), {})
            writer.writerows(zip(chunk, (f"{p:.8g}" for p in pred), strict=True))
            log.info("predict-images: %d/%d crops scored", start + len(chunk), len(ids))
    seconds = time.perf_counter() - t0
    log.info("predict-images: wrote %s (%d rows, %.1fs, %.0f crops/s)", out, len(ids), seconds,
             len(ids) / max(seconds, 1e-9))
    return {"out": str(out), "rows": len(ids), "seconds": round(seconds, 2)}
