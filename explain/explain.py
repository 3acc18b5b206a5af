"""``isic explain``: Grad-CAM of a saved image-only run for chosen crops -> one PNG per id.

Each PNG shows the crop and the crop with its heatmap. The probability is the run's
fold-averaged score from the shared prediction path (``ImagePredictor``, what ``isic
predict-images`` writes) and the map is the mean of every fold model's Grad-CAM, so both describe
the same ensemble; ``explain.json`` beside the PNGs lists each id's probability and file.
For a training crop, the folds that trained on it take part too; the report's figures use the
fold that held each crop out instead (``explain.report_section``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.data.io import write_json
from isicstack.data.layout import TRAIN_IMAGES, resolve_data_dir
from isicstack.explain.cam import last_stage_name
from isicstack.explain.config import ExplainConfig
from isicstack.explain.figures import panel, write_png
from isicstack.explain.maps import check_ids, crop_maps, load_image_only
from isicstack.settings.chain import image_only_run

log = logging.getLogger(__name__)



def read_ids(cfg: ExplainConfig) -> list[str]:
    """``isic_ids`` then the ids of ``ids_file``, duplicates dropped, order kept."""
    raw = cfg.isic_ids.split(",") if isinstance(cfg.isic_ids, str) else cfg.isic_ids
    ids = [str(x).strip() for x in raw if str(x).strip()]
    if cfg.ids_file:
        path = Path(cfg.ids_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ids_file not found")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        if lines and "," in lines[0]:
            df = pl.read_csv(path, infer_schema=False)
            if "isic_id" not in df.columns:
                raise ValueError(f"{path}: a CSV ids_file needs an isic_id column")
            lines = df["isic_id"].drop_nulls().to_list()
        elif lines and lines[0] == "isic_id":
            lines = lines[1:]
        ids += [x for x in lines if x]
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise ValueError("explain: no ids; give isic_ids=[ISIC_...] or ids_file=<file>")
    if len(ids) > cfg.max_ids:
        raise ValueError(f"explain: {len(ids)} ids, more than max_ids={cfg.max_ids}")
    return ids


def image_path(cfg: ExplainConfig) -> Path:
    """The crops to explain: ``images`` or the data dir's ``train-image.hdf5``."""
    path = Path(cfg.images) if cfg.images else (
        resolve_data_dir(cfg.data_dir, cfg.profile) / TRAIN_IMAGES)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such HDF5 file or image folder (set images=)")
    return path


def _auto_layer(predictor: Any, min_map: int) -> str:
    size = predictor.cfg.model.image_size
    return "backbone." + last_stage_name(predictor.nets[0].backbone, size, min_map)


def run(cfg: ExplainConfig) -> dict[str, Any]:
    """Write ``<out>/<isic_id>.png`` (crop | crop + heatmap) and ``explain.json``."""
    t0 = time.perf_counter()
    cfg = replace(cfg, name=image_only_run(cfg.name))
    ids = read_ids(cfg)
    images = image_path(cfg)
    out = Path(cfg.out) if cfg.out else Path(cfg.artifacts) / "explain" / cfg.name
    predictor = load_image_only(cfg.artifacts, cfg.name, images, cfg.accelerator,
                                cfg.cpu_threads)
    check_ids(predictor.source, ids)
    probs = predictor.predict(pl.DataFrame({"isic_id": ids}), {})
    maps = crop_maps(predictor, ids, cfg.layer, min_map=cfg.min_map)
    items = []
    for isic_id, prob, cam in zip(ids, probs, maps, strict=True):
        crop = predictor.source.image(isic_id)
        png = write_png(panel(crop, cam, cfg.image_weight, cfg.display_size),
                        out / f"{isic_id}.png")
        items.append({"isic_id": isic_id, "prob": round(float(prob), 6), "png": png.name})
    summary = {"run": cfg.name, "images": str(images), "folds": len(predictor.nets),
               "cam": f"mean Grad-CAM of {len(predictor.nets)} fold model(s)",
               "layer": cfg.layer or _auto_layer(predictor, cfg.min_map), "items": items,
               "config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 2)}
    write_json(summary, out / "explain.json")
    log.info("explain: wrote %d PNG(s) and explain.json to %s (%.1fs)", len(items), out,
             summary["seconds"])
    return summary
