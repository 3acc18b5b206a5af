"""The saved calibration maps of ``isic calibrate``: where they live, reading one, applying them.

``pipelines/calibrate.py`` fits and writes the maps; ``isic predict``, the Kaggle package and
the app only read them. The reading side lives here, below ``inference`` and ``app``, so the
predict path needs nothing of the fitting stage. A map is used only while the run file it was
fitted for (checked by SHA-256) is the one on disk: a retrained model has no calibrated risk
until ``isic calibrate`` runs again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from isicstack.data.provenance import file_sha256
from isicstack.evaluation.calibration import CalMap

FOLDER = "calibration"


def calibration_dir(artifacts: str | Path, out: str = "") -> Path:
    """Where the maps and calibrated OOF scores live."""
    return Path(out) if out else Path(artifacts) / FOLDER


def map_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def read_map(artifacts: str | Path, name: str) -> tuple[CalMap | None, str]:
    """The saved map of ``name`` if it belongs to the run now on disk, else None and why."""
    path = map_path(calibration_dir(artifacts), name)
    if not path.is_file():
        return None, f"no calibration map for `{name}` ({path}): run `isic calibrate`"
    doc = json.loads(path.read_text(encoding="utf-8"))
    rel = (doc.get("source") or {}).get("file")
    src = Path(artifacts) / rel if rel else None
    if src is None or not src.is_file() or file_sha256(src) != doc["source"]["sha256"]:
        return None, (f"the calibration map of `{name}` ({path}) was fitted for another "
                      f"training run of it: rerun `isic calibrate`")
    return CalMap.from_dict(doc["map"]), ""


def apply_maps(artifacts: str | Path, scores: dict[str, np.ndarray], mode: str = "auto",
               required: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Calibrated risks of every score with a current map, and why the others have none.

    ``mode``: ``auto`` (apply where a map is current), ``required`` (the ``required`` names
    must have one: an error otherwise) or ``off``.
    """
    if mode not in ("auto", "required", "off"):
        raise ValueError(f"calibration: {mode!r} is not one of auto, required, off")
    risks: dict[str, np.ndarray] = {}
    missing: dict[str, str] = {}
    if mode == "off":
        return risks, dict.fromkeys(scores, "calibration: off")
    for name, pred in scores.items():
        cal, why = read_map(artifacts, name)
        if cal is None:
            if mode == "required" and name in required:
                raise FileNotFoundError(f"calibration: required, but {why}")
            missing[name] = why
        else:
            risks[name] = cal.apply(pred)
    return risks, missing
