"""How close scores are to probabilities: Brier score, log loss, calibration intercept and
slope, and a reliability curve, each with a bootstrap over patients.

Lesions of one patient are correlated, so intervals resample whole patients
(``evaluation.paired.patient_draws``, the helper ``isic compare`` uses). Brier score and log loss
are means of per-row losses, so a replicate is one matrix product of patient multiplicities with
per-patient sums: 1,000 replicates of 400k rows cost a fraction of a second.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from isicstack.calibration.maps import safe_logit
from isicstack.evaluation.paired import patient_draws, percentile_interval

LOG_CLIP = 1e-15  # log loss of a probability of exactly 0 or 1 would be infinite


def row_losses(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row squared error and negative log-likelihood."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    q = np.clip(p, LOG_CLIP, 1.0 - LOG_CLIP)
    return {"brier": (p - y) ** 2, "log_loss": -(y * np.log(q) + (1 - y) * np.log1p(-q))}


def _interval(dist: np.ndarray, ci: float) -> list[float]:
    return percentile_interval(dist, ci) or [float("nan"), float("nan")]


def losses(y: np.ndarray, preds: dict[str, np.ndarray], patients: np.ndarray,
           n_boot: int = 1000, seed: int = 0, ci: float = 0.95,
           reference: str | None = None) -> dict[str, dict[str, Any]]:
    """Brier score and log loss of every score in ``preds``, with patient-bootstrap intervals.

    With ``reference`` (a key of ``preds``), each entry also gets its difference from it
    (``brier_diff``: entry minus reference), paired on the same replicates, and the ratio of
    Brier scores (``brier_ratio``): "within 10 % of the oracle" is a ratio <= 1.10.
    """
    counts, codes = patient_draws(patients, max(n_boot, 1), seed)
    n_pat = counts.shape[1]
    rows_per = np.bincount(codes, minlength=n_pat).astype(np.float64)
    boot_rows = counts @ rows_per
    per: dict[str, dict[str, np.ndarray]] = {}
    out: dict[str, dict[str, Any]] = {}
    for name, p in preds.items():
        per[name] = {}
        out[name] = {}
        for metric, loss in row_losses(y, p).items():
            sums = np.bincount(codes, weights=loss, minlength=n_pat)
            per[name][metric] = counts @ sums / boot_rows
            out[name][metric] = float(loss.mean())
            if n_boot:
                out[name][f"{metric}_ci"] = _interval(per[name][metric], ci)
    if reference is not None and reference in preds:
        ref = per[reference]
        for name in preds:
            for metric in ("brier", "log_loss"):
                out[name][f"{metric}_diff"] = out[name][metric] - out[reference][metric]
                if n_boot:
                    out[name][f"{metric}_diff_ci"] = _interval(
                        per[name][metric] - ref[metric], ci)
            out[name]["brier_ratio"] = out[name]["brier"] / out[reference]["brier"]
            if n_boot:
                out[name]["brier_ratio_ci"] = _interval(per[name]["brier"] / ref["brier"], ci)
    return out


def intercept_slope(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Calibration-in-the-large and slope (Van Calster et al. 2019): mean risk vs prevalence,
    and the slope of a logistic fit of the label on the score's logit (1 = not over- or
    under-confident; < 1: risks too extreme)."""
    z = safe_logit(p)
    z = np.clip(z, -50, 50)
    y = np.asarray(y).astype(np.int64)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(z[:, None], y)
    return {"mean_risk": float(np.mean(p)), "prevalence": float(np.mean(y)),
            "slope": float(lr.coef_[0, 0])}


def monotone_floor(y: np.ndarray, p: np.ndarray) -> float:
    """Brier score of isotonic regression fitted and scored on the same rows: no monotone map
    of ``p`` does better here, so the rest of the gap to the truth is ranking, not calibration
    (optimistic by construction: a floor, never a result)."""
    y = np.asarray(y, dtype=np.float64)
    fit = IsotonicRegression(out_of_bounds="clip").fit(p, y).predict(p)
    return float(np.mean((fit - y) ** 2))


def reliability(y: np.ndarray, p: np.ndarray, patients: np.ndarray, bins: int = 10,
                n_boot: int = 200, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """Equal-count bins of ``p``: mean predicted risk, observed rate and its patient-bootstrap
    band per bin. Equal counts, because with rare positives fixed-width bins above 0.1 hold a
    handful of rows each."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    bins = max(1, min(bins, p.size))
    order = np.argsort(p, kind="stable")
    which = np.empty(p.size, dtype=np.int64)
    which[order] = np.minimum(np.arange(p.size) * bins // max(p.size, 1), bins - 1)
    counts, codes = patient_draws(patients, max(n_boot, 1), seed)
    n_pat = counts.shape[1]
    cells = which * n_pat + codes  # (bin, patient) cells: sums per cell, then per replicate
    size = bins * n_pat
    rows = np.bincount(cells, minlength=size).reshape(bins, n_pat).astype(np.float64)
    pos = np.bincount(cells, weights=y, minlength=size).reshape(bins, n_pat)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = (counts @ pos.T) / (counts @ rows.T)  # (n_boot, bins)
    n = rows.sum(axis=1)
    lo_hi = [_interval(boot[:, b], ci) for b in range(bins)] if n_boot else []
    return {"predicted": [float(p[which == b].mean()) for b in range(bins)],
            "observed": (pos.sum(axis=1) / np.maximum(n, 1)).tolist(),
            "rows": n.astype(int).tolist(),
            "observed_lo": [v[0] for v in lo_hi], "observed_hi": [v[1] for v in lo_hi]}
