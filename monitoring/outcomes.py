"""How the model does in a window, from the outcomes that came back, corrected for who was verified.

Outcomes exist for lesions someone chose to biopsy (mostly the flagged ones) plus a random audit
sample. Sensitivity from biopsied lesions alone is biased upward (verification bias): a missed
cancer is rarely biopsied, so it rarely counts. The correction is Begg & Greenes' (1983), as
inverse-probability weights by flag stratum: in each stratum (flagged / not flagged) the
verification probability is the verified share of that stratum's lesions in the window, and a
verified lesion stands for ``1 / probability`` lesions. It assumes verification depends on the
flag alone within a stratum (true of the random audit, an approximation for biopsy choices).
Without verified unflagged lesions (no audit) the corrected figures are undefined and said so;
the naive figures are always shown beside them.

Intervals: a patient bootstrap (patients resampled, the stratum probabilities recomputed in each
replicate). Calibration: observed vs expected positives among verified lesions (valid without
weights, as verification depends on the score only), a z-test with a design effect for patients.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

from isicstack.data.metric import weighted_pauc
from isicstack.evaluation.paired import patient_draws, percentile_interval
from isicstack.monitoring import stats
from isicstack.monitoring.config import MonitorConfig
from isicstack.monitoring.drift import check

FIGURES = ("sensitivity", "specificity", "auc", "pauc")


def _figures(y: np.ndarray, flag: np.ndarray, score: np.ndarray, w: np.ndarray
             ) -> dict[str, np.ndarray]:
    """Weighted sensitivity, specificity, AUC and pAUC for each row of ``w`` (replicates)."""
    w = np.atleast_2d(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = (w * (y * flag)).sum(1) / (w * y).sum(1)
        spec = (w * ((1 - y) * (1 - flag))).sum(1) / (w * (1 - y)).sum(1)
        return {"sensitivity": sens, "specificity": spec,
                "auc": weighted_pauc(y, score, w, min_tpr=0.0), "pauc": weighted_pauc(y, score, w)}


def _ipw(w: np.ndarray, flag: np.ndarray, verified: np.ndarray) -> np.ndarray:
    """Weights of the verified rows: ``w / P(verified | stratum)``, strata recomputed per row
    of ``w`` (NaN where a stratum has no verified lesion)."""
    w = np.atleast_2d(w)
    out = np.zeros((w.shape[0], int(verified.sum())))
    for stratum in (True, False):
        rows = flag == stratum
        with np.errstate(divide="ignore", invalid="ignore"):
            prob = (w[:, rows & verified].sum(1) / w[:, rows].sum(1))[:, None]
            cols = rows[verified]
            out[:, cols] = np.where(prob > 0, w[:, verified][:, cols] / prob, np.nan)
    return out


def _interval(dist: np.ndarray, ci: float) -> list[float] | None:
    return percentile_interval(dist[np.isfinite(dist)], ci) if np.isfinite(dist).any() else None


def outcome_figures(score: np.ndarray, risk: np.ndarray, flag: np.ndarray, label: np.ndarray,
                    groups: np.ndarray, cfg: MonitorConfig) -> dict[str, Any]:
    """Naive and corrected figures of one window (``label`` NaN = not verified)."""
    verified = np.isfinite(label)
    flag = flag.astype(bool)
    y, f, s = label[verified], flag[verified].astype(np.float64), score[verified]
    out: dict[str, Any] = {
        "verified": int(verified.sum()), "positives": int(np.nansum(label)),
        "verified_share": {"flagged": float(verified[flag].mean()) if flag.any() else None,
                           "not_flagged": float(verified[~flag].mean()) if (~flag).any()
                           else None}}
    if not (0 < y.sum() < y.size):
        out["skipped"] = "no verified positives and negatives in this window"
        return out
    naive = _figures(y, f, s, np.ones(y.size))
    out["naive"] = {k: float(v[0]) for k, v in naive.items()}
    point_w = _ipw(np.ones(flag.size), flag, verified)
    if not np.isfinite(point_w).all():
        out["corrected"] = None
        out["note"] = ("no verified lesion among the unflagged ones (no audit sample): "
                       "the corrected figures are undefined")
        return out
    point = _figures(y, f, s, point_w)
    counts, codes = patient_draws(groups, cfg.n_boot, cfg.seed)
    boot = _figures(y, f, s, _ipw(counts[:, codes].astype(np.float64), flag, verified))
    out["corrected"] = {k: {"value": float(point[k][0]), "ci": _interval(boot[k], cfg.ci)}
                        for k in FIGURES}
    prevalence = float((point_w[0] * y).sum() / flag.size)
    out["prevalence"] = prevalence
    if np.isfinite(risk).all():
        out["mean_risk"] = float(risk.mean())
    return out


def calibration_check(risk: np.ndarray, label: np.ndarray, groups: np.ndarray,
                      cfg: MonitorConfig) -> dict[str, Any] | None:
    """Observed vs expected positives among verified lesions with a risk: effect = the larger
    of O/E and E/O, p = two-sided z-test (variance times the patients' design effect)."""
    ok = np.isfinite(label) & np.isfinite(risk)
    if ok.sum() < 30:
        return None
    y, r = label[ok], np.clip(risk[ok], 1e-6, 1 - 1e-6)
    observed, expected, var = float(y.sum()), float(r.sum()), float((r * (1 - r)).sum())
    deff = stats.design_effect(y - r, groups[ok]) if cfg.cluster else 1.0
    z = (observed - expected) / math.sqrt(var * deff)
    ratio = observed / expected
    effect = max(ratio, 1 / ratio) if ratio > 0 else math.inf
    return check("calibration", "observed/expected", effect, cfg.calibration_floor,
                 float(2 * sps.norm.sf(abs(z))), observed=observed, expected=expected,
                 ratio=ratio, n=int(ok.sum()))


def threshold_checks(figures: dict[str, Any], cfg: MonitorConfig) -> list[dict[str, Any]]:
    """A configured minimum (sensitivity, specificity, AUC) that the corrected interval lies
    wholly below: an alert by rule, no test."""
    corrected = figures.get("corrected") or {}
    found = []
    for name, minimum in (("sensitivity", cfg.min_sensitivity),
                          ("specificity", cfg.min_specificity), ("auc", cfg.min_auc)):
        ci = (corrected.get(name) or {}).get("ci")
        if minimum > 0 and ci is not None:
            found.append(check("threshold", name, minimum - ci[1], 1e-9, None,
                               value=corrected[name]["value"], ci=ci, minimum=minimum))
    return found
