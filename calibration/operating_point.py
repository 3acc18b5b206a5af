"""Operating-point evaluation: what a model does at one threshold, with patient-bootstrap CIs.

pAUC ranks; a clinic runs one threshold. The threshold is picked on the OOF scores at a target
sensitivity (default 0.80, the floor of the competition's pAUC region), and the counts a
clinician cares about follow from it: the confusion matrix, precision / recall / specificity /
F1 and how many lesions per 1,000 would be sent for review. Confidence intervals resample
whole PATIENTS (lesions of one patient are correlated; resampling rows would be too narrow).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from isicstack.calibration.config import OperatingPointConfig

COUNTS = ("tp", "fp", "tn", "fn")


def threshold_at_tpr(y: np.ndarray, pred: np.ndarray, target_tpr: float) -> float:
    """Highest ``t`` with sensitivity of ``pred >= t`` at least ``target_tpr``.

    That is the k-th highest positive score, k = ceil(target * positives): any higher threshold
    misses one positive too many, any lower one only adds false positives.
    """
    pos = np.sort(np.asarray(pred, dtype=np.float64)[np.asarray(y) == 1])[::-1]
    if pos.size == 0:
        raise ValueError("operating point: no positive rows, the sensitivity is undefined")
    k = max(1, math.ceil(target_tpr * pos.size - 1e-9))
    return float(pos[k - 1])


def rates(tp: Any, fp: Any, tn: Any, fn: Any) -> dict[str, np.ndarray]:
    """Precision, recall, specificity, F1, review rate from counts (broadcast; 0/0 is NaN)."""
    tp, fp, tn, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, tn, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"precision": tp / (tp + fp), "recall": tp / (tp + fn),
                "specificity": tn / (tn + fp), "f1": 2 * tp / (2 * tp + fp + fn),
                "review_per_1000": 1000 * (tp + fp) / (tp + fp + tn + fn)}


def _per_patient(y: np.ndarray, hit: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """(4, n_patients) counts of tp, fp, tn, fn per patient."""
    pos = y == 1
    masks = (pos & hit, ~pos & hit, ~pos & ~hit, pos & ~hit)
    return np.stack([np.bincount(codes, weights=m.astype(np.float64), minlength=n)
                     for m in masks])


def _draws(n_patients: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_patients) multiplicity of each patient in each bootstrap replicate."""
    pick = rng.integers(0, n_patients, size=(n_boot, n_patients))
    flat = (pick + n_patients * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_patients).reshape(n_boot, n_patients)


def _boot_thresholds(y: np.ndarray, pred: np.ndarray, codes: np.ndarray, weights: np.ndarray,
                     target: float) -> np.ndarray:
    """The threshold re-picked in each replicate (weighted k-th highest positive score)."""
    pos = np.flatnonzero(y == 1)
    order = pos[np.argsort(-pred[pos], kind="stable")]
    w = weights[:, codes[order]].astype(np.float64)  # (n_boot, positives)
    cum = np.cumsum(w, axis=1)
    need = target * cum[:, -1:] - 1e-9
    idx = np.argmax(cum >= need, axis=1)
    out = pred[order][idx]
    out[cum[:, -1] == 0] = np.nan  # a replicate without positives has no threshold
    return out


def operating_point(y: np.ndarray, pred: np.ndarray, patients: np.ndarray,
                    cfg: OperatingPointConfig) -> dict[str, Any]:
    """Threshold, confusion matrix and rates at ``cfg.target_tpr``, each with a patient CI.

    The rates' intervals hold the OOF-picked threshold fixed (what a deployed model does); the
    threshold's own interval re-picks it in every replicate (how stable the choice is).
    """
    y = np.asarray(y).astype(np.int64)
    pred = np.asarray(pred, dtype=np.float64)
    thr = threshold_at_tpr(y, pred, cfg.target_tpr)
    hit = pred >= thr
    _, codes = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    n_pat = int(codes.max()) + 1
    per = _per_patient(y, hit, codes, n_pat)
    point: dict[str, float] = {k: float(v) for k, v in zip(COUNTS, per.sum(axis=1), strict=True)}
    point.update({k: float(v) for k, v in rates(*per.sum(axis=1)).items()})
    point["threshold"] = thr
    out: dict[str, Any] = {"target_tpr": cfg.target_tpr, "rows": int(y.size),
                           "patients": n_pat, "n_boot": cfg.n_boot, "ci": cfg.ci,
                           "point": point, "ci_low": {}, "ci_high": {}}
    if cfg.n_boot == 0:
        return out
    weights = _draws(n_pat, cfg.n_boot, np.random.default_rng(cfg.seed))
    counts = weights @ per.T  # (n_boot, 4)
    boot = {k: counts[:, j] for j, k in enumerate(COUNTS)}
    boot.update(rates(*counts.T))
    boot["threshold"] = _boot_thresholds(y, pred, codes, weights, cfg.target_tpr)
    alpha = 100 * (1 - cfg.ci) / 2
    for k, v in boot.items():
        finite = v[np.isfinite(v)]
        lo, hi = np.percentile(finite, [alpha, 100 - alpha]) if finite.size else (np.nan, np.nan)
        out["ci_low"][k], out["ci_high"][k] = float(lo), float(hi)
    return out


def _fmt(op: dict[str, Any], key: str, digits: int) -> str:
    value = f"{op['point'][key]:.{digits}f}"
    if key in op["ci_low"]:
        value += f" [{op['ci_low'][key]:.{digits}f}, {op['ci_high'][key]:.{digits}f}]"
    return value


def markdown(points: dict[str, dict[str, Any]]) -> list[str]:
    """Report lines: one row per model with the threshold, rates and confusion matrix."""
    if not points:
        return []
    first = next(iter(points.values()))
    ci = f"{100 * first['ci']:.0f}% CI over {first['patients']} patients, " \
         f"{first['n_boot']} bootstrap replicates" if first["n_boot"] else "no bootstrap"
    lines = [f"\n## Operating point at sensitivity ≥ {first['target_tpr']:.2f}\n",
             "Threshold picked on the OOF scores; [" + ci + "]. Review = lesions flagged per "
             "1,000 examined (TP + FP). The rates' intervals keep the threshold fixed; the "
             "threshold's interval re-picks it in each replicate.\n",
             "| model | threshold | recall | specificity | precision | F1 | review / 1,000 "
             "| TP | FP | TN | FN |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, op in points.items():
        cells = [_fmt(op, "threshold", 4), *(_fmt(op, k, 3) for k in
                 ("recall", "specificity", "precision", "f1")), _fmt(op, "review_per_1000", 1),
                 *(f"{op['point'][k]:.0f}" for k in COUNTS)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
