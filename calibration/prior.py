"""The prior shift of a model's scores: what its training sampling added to the log-odds.

Read from the run's saved ``config.yaml``: ``neg_ratio`` and ``scale_pos_weight`` (or LightGBM's
``is_unbalance``) of a GBDT, ``data.neg_ratio`` and ``optim.pos_weight`` of a CNN (flat
``neg_ratio`` / ``pos_weight`` in runs saved before the image config's keys were grouped); 0
for the stack, whose level-2 model sees the data's own class mix. Part of fitting a map
(:mod:`isicstack.calibration.fit` turns it into the shift), kept apart from ``isic calibrate``,
which only orchestrates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from isicstack.calibration.fit import prior_shift
from isicstack.calibration.scores import STACK
from isicstack.data.io import DataError
from isicstack.data.layout import run_dir
from isicstack.settings.keys import migrate, moved_keys
from isicstack.vision.config import ImageConfig


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
