"""The report's Grad-CAM figure: top-scoring positives and top false positives of an image run.

Each map comes from the fold model that held the crop out, so it explains the out-of-fold score
printed above it (a fold that trained on the crop would explain a different, optimistic score).
Skipped, with the reason in ``report.md``, when there is no image-only run, no crops or no
``grad-cam`` (the optional extra ``explain``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.layout import TRAIN_IMAGES, run_dir
from isicstack.data.sections import skipped, skipped_lines
from isicstack.explain.config import GradcamReportConfig
from isicstack.explain.figures import grid, overlay
from isicstack.explain.maps import check_ids, crop_maps, load_image_only
from isicstack.extras import MissingExtraError
from isicstack.ledger.result import trained_folds
from isicstack.settings.chain import image_only_run

log = logging.getLogger(__name__)

FIGURE = "gradcam.png"


def pick(y: np.ndarray, pred: np.ndarray, top: int) -> dict[str, np.ndarray]:
    """Row indices of the ``top`` highest-scoring positives and negatives (false positives)."""
    order = np.argsort(-pred, kind="stable")
    return {"positives": order[y[order] == 1][:top],
            "false_positives": order[y[order] == 0][:top]}


def _render(cfg: GradcamReportConfig, artifacts: str, images: Path, folds: pl.DataFrame,
            pred: np.ndarray, chosen: dict[str, np.ndarray], out: Path, dpi: int
            ) -> dict[str, Any]:
    predictor = load_image_only(artifacts, cfg.name, images, "cpu")
    trained = trained_folds(run_dir(artifacts, cfg.name))
    idx = np.concatenate(list(chosen.values()))
    ids = folds["isic_id"].to_numpy()[idx].tolist()
    check_ids(predictor.source, ids)
    which = [trained.index(int(f)) for f in folds["fold"].to_numpy()[idx]]
    maps = dict(zip(ids, crop_maps(predictor, ids, cfg.layer, which, cfg.min_map), strict=True))
    rows, listed = [], {}
    for group, title in (("positives", "top positives"), ("false_positives", "top negatives")):
        items = []
        for i in chosen[group]:
            isic_id = folds["isic_id"][int(i)]
            crop = predictor.source.image(isic_id)
            items.append((f"{isic_id}\nOOF p={pred[i]:.3f}",
                          overlay(crop, maps[isic_id], cfg.image_weight)))
        rows.append((title, items))
        listed[group] = [{"isic_id": folds["isic_id"][int(i)], "oof": float(pred[i])}
                         for i in chosen[group]]
    return {"name": cfg.name, "image": grid(rows, out / FIGURE, dpi), **listed}


def gradcam_section(cfg: GradcamReportConfig, artifacts: str, data_dir: Path,
                    folds: pl.DataFrame, preds: dict[str, np.ndarray], out: Path,
                    dpi: int) -> dict[str, Any]:
    """``{"image": ..., "positives": [...], ...}``, or ``{"skipped": reason}``."""
    if not cfg.enabled:
        return skipped("disabled (gradcam.enabled=false)")
    cfg = replace(cfg, name=image_only_run(cfg.name))
    if cfg.name not in preds:
        return skipped(f"no image-only run `{cfg.name}` with OOF scores for these folds "
                       "(make train-image-only)")
    images = data_dir / TRAIN_IMAGES
    if not images.is_file():
        return skipped(f"{images}: the crops are not there")
    y = folds["target"].to_numpy().astype(np.int64)
    chosen = pick(y, preds[cfg.name], cfg.top)
    try:
        return _render(cfg, artifacts, images, folds, preds[cfg.name], chosen, out, dpi)
    except (MissingExtraError, FileNotFoundError, ValueError) as err:
        log.warning("report: Grad-CAM skipped: %s", err)
        return skipped(str(err))


def markdown(section: dict[str, Any] | None) -> list[str]:
    """Report lines: the figure and what it shows, or why it is missing."""
    if not section:
        return []
    if (done := skipped_lines("Grad-CAM", section)) is not None:
        return done
    return [f"\n## Grad-CAM of `{section['name']}`\n",
            "Top row: the highest-scoring positives; bottom row: the highest-scoring negatives "
            "(the first false positives at any threshold). Red = the regions that raised the "
            "score; each map is from the fold model that held the crop out, so it explains the "
            "OOF score shown.\n", f"![Grad-CAM]({section['image']})"]
