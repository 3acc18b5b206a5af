"""Grad-CAM maps of an image-only run's crops: the one path ``isic explain``, the report's
Grad-CAM section and the app share (so the app needs the maps, not the ``isic explain``
command). The run is loaded through the prediction path (``ImagePredictor``), and crops are
decoded and resized exactly as for scoring, so a map explains the score printed beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from isicstack.explain.cam import cam_maps
from isicstack.vision.data import CropDataset, eval_transform
from isicstack.vision.predict import ImagePredictor

CHUNK = 32  # crops per Grad-CAM pass


def check_ids(source: Any, ids: Sequence[str]) -> None:
    """Every id has a crop; else one error naming the missing ids and the file."""
    known = set(source.keys())
    missing = [i for i in ids if i not in known]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"{source.path}: no crop for isic_id {', '.join(missing[:5])}{more}")


def load_image_only(artifacts: str, name: str, images: Any, accelerator: str = "cpu",
                    cpu_threads: int = 0) -> Any:
    """The run's ``ImagePredictor`` (the shared prediction path); a fused run is refused."""
    predictor = ImagePredictor(artifacts, name, images, accelerator, 64, 0, cpu_threads)
    if predictor.fusion is not None or any(n.tab_skip is not None for n in predictor.nets):
        raise ValueError(f"{name}: Grad-CAM explains an image-only run (fusion=false, e.g. "
                         "vision_imgonly); a fused run's score also needs tabular features")
    return predictor


def crop_maps(predictor: Any, ids: Sequence[str], layer: str = "",
              which: Sequence[int] | None = None, min_map: int = 4) -> np.ndarray:
    """(N, S, S) Grad-CAM maps of ``ids``, from crops decoded and resized as for scoring."""
    size = predictor.cfg.model.image_size
    ds = CropDataset(predictor.source, list(ids), eval_transform(size))
    maps = []
    for start in range(0, len(ds), CHUNK):
        part = range(start, min(start + CHUNK, len(ds)))
        batch = torch.stack([ds[i]["image"] for i in part]).to(predictor.device)
        maps.append(cam_maps(predictor.nets, batch, layer,
                             None if which is None else [which[i] for i in part], min_map))
    return np.concatenate(maps)
