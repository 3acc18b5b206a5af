"""The calibration maps of ``isic calibrate`` as inference uses them: the map (``CalMap``, its
``apply``), where saved maps live, reading one, applying them.

``calibration/fit.py`` fits them and ``isic calibrate`` (``evaluation/calibrate.py``) writes
them; ``isic predict``, the Kaggle package and the app only read them here. A map is used
only while the run file it was fitted for (checked by SHA-256) is the one on disk: a retrained
model has no calibrated risk until ``isic calibrate`` runs again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isicstack.data.metric import tie_break
from isicstack.data.provenance import file_sha256

FOLDER = "calibration"
METHODS: tuple[str, ...] = ("platt", "isotonic", "prior")
P_MIN = 1e-300  # logit clip: only exact 0 and 1 are clipped, so no new ties are made
P_MAX = 1.0 - 2.0 ** -53


def safe_logit(p: np.ndarray) -> np.ndarray:
    """Log-odds that keep every distinct probability distinct (clip only at 0 and 1)."""
    p = np.clip(np.asarray(p, dtype=np.float64), P_MIN, P_MAX)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@dataclass
class CalMap:
    """A fitted score -> probability map; ``apply`` is all inference needs."""

    method: str
    shift: float = 0.0          # subtracted from the logit (prior correction)
    scale: str = "logit"        # "logit": scores are probabilities; "raw": used as they are
    a: float = 1.0              # platt slope (> 0) ...
    b: float = 0.0              # ... and intercept on the shifted logit
    knots_x: list[float] = field(default_factory=list)  # isotonic: shifted logit ...
    knots_y: list[float] = field(default_factory=list)  # ... -> probability (non-decreasing)
    rows: int = 0
    positives: int = 0

    def z(self, pred: np.ndarray) -> np.ndarray:
        """The map's input: the prior-shifted logit (or the raw score, shifted)."""
        pred = np.asarray(pred, dtype=np.float64)
        return (safe_logit(pred) if self.scale == "logit" else pred) - self.shift

    def apply(self, pred: np.ndarray) -> np.ndarray:
        """Calibrated probability of each score; strictly increasing in the score."""
        z = self.z(pred)
        if self.method == "isotonic":
            m = np.interp(z, np.asarray(self.knots_x), np.asarray(self.knots_y))
        elif self.method == "platt":
            m = sigmoid(self.a * z + self.b)
        else:
            m = sigmoid(z)
        return tie_break(m, z)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalMap:
        """Rebuild from ``to_dict``; a hand-edited or truncated file fails here, named."""
        if d.get("method") not in METHODS:
            raise ValueError(f"calibration map: method {d.get('method')!r} not in {METHODS}")
        cal = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        if cal.scale not in ("logit", "raw"):
            raise ValueError(f"calibration map: scale {cal.scale!r} not logit/raw")
        if cal.method == "isotonic" and (len(cal.knots_x) != len(cal.knots_y)
                                         or not cal.knots_x):
            raise ValueError("calibration map: isotonic knots missing or of different lengths")
        if cal.method == "platt" and not cal.a > 0:
            raise ValueError(f"calibration map: platt slope {cal.a} is not > 0")
        return cal


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
