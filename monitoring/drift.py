"""What a window's inputs, crops and scores look like against the bundle's reference.

One check per question, each a dict with its effect size (``effect``, against ``floor``) and,
where a test applies, its p-value (``p``, corrected later over the whole window by Holm):

- each numeric input, crop statistic and score: PSI on the reference deciles + two-sample KS
  against the reference sample; its missing rate against the reference's; its share outside
  the reference's [min, max];
- each categorical input: PSI + chi-square against the reference shares, its missing rate, and
  its share in categories the reference never saw (a new centre): a rule, no test;
- the review rate of each scorer against the expected one, with a Wilson interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from isicstack.monitoring import stats
from isicstack.monitoring.config import MonitorConfig

CROP_COLUMNS = {"width": "crop_width", "height": "crop_height", "brightness": "brightness",
                "mean_r": "mean_r", "mean_g": "mean_g", "mean_b": "mean_b"}
MIN_ROWS = 30  # fewer non-missing values than this: the distribution check is left out


def check(family: str, name: str, effect: float, floor: float, p: float | None,
          **detail: Any) -> dict[str, Any]:
    """One finding of a window (``rejected``/``alert`` are set once the window is complete)."""
    return {"family": family, "name": name, "effect": float(effect), "floor": float(floor),
            "p": None if p is None else float(p), "rejected": False, "alert": False, **detail}


def psi_floor(bins: int, n: int, deff: float, cfg: MonitorConfig) -> float:
    """The PSI an alert needs: ``psi_floor``, or more in a window of few effective lesions:
    ``psi_noise`` times the PSI a clean window of ``n / deff`` independent draws shows by chance
    (n PSI is about chi-square with ``bins - 1`` degrees of freedom)."""
    n_eff = max(n / max(deff, 1.0), 1.0)
    return max(cfg.psi_floor, cfg.psi_noise * (bins - 1) / n_eff)


def patient_codes(frame: pl.DataFrame) -> np.ndarray:
    """Each lesion's patient as an integer code (the clusters of every test)."""
    return np.unique(frame.get_column("patient_hash").to_numpy().astype(str),
                     return_inverse=True)[1]


def _deff(y: np.ndarray, groups: np.ndarray, cfg: MonitorConfig) -> float:
    return stats.design_effect(y, groups) if cfg.cluster else 1.0


def expected_shares(stat: dict[str, Any]) -> np.ndarray:
    """The reference's decile shares (``serving.reference.bin_fractions``: the bins the window
    is counted in here, ``stats.bin_index``, are the same)."""
    return np.asarray(stat["fractions"], dtype=np.float64)


def numeric_checks(family: str, name: str, x: np.ndarray, groups: np.ndarray,
                   stat: dict[str, Any], cfg: MonitorConfig) -> list[dict[str, Any]]:
    """Distribution (PSI + KS), missing rate and out-of-range share of one numeric column."""
    x = np.asarray(x, dtype=np.float64)
    miss = ~np.isfinite(x)
    out: list[dict[str, Any]] = []
    n = x.size
    ref_missing = float(stat.get("missing") or 0.0)
    deff = _deff(miss.astype(np.float64), groups, cfg)
    out.append(check("missing", f"{family}:{name}", abs(miss.mean() - ref_missing),
                     cfg.missing_floor, stats.binom_pvalue(float(miss.mean()), n / deff,
                                                          ref_missing), rate=float(miss.mean()),
                     expected=ref_missing))
    ok, g = x[~miss], groups[~miss]
    edges = stat.get("edges") or []
    if ok.size < MIN_ROWS or len(edges) < 2:
        return out
    lo, hi = float(stat.get("min", edges[0])), float(stat.get("max", edges[-1]))
    outside = ((ok < lo) | (ok > hi)).astype(np.float64)
    rows = max(int(stat.get("rows") or 0), len(stat.get("sample") or []), 1)
    p0 = 2.0 / (rows + 1)  # chance a new draw falls outside the range of `rows` draws
    deff = _deff(outside, g, cfg)
    out.append(check("range", f"{family}:{name}", float(outside.mean()), cfg.range_floor,
                     stats.binom_pvalue(float(outside.mean()), ok.size / deff, p0, "greater"),
                     range=[lo, hi]))
    idx = stats.bin_index(ok, edges)
    value = stats.psi(stats.shares(idx, len(edges) - 1), expected_shares(stat))
    sample = np.asarray(stat.get("sample") or [], dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    deff = _deff(idx.astype(np.float64), g, cfg)
    d, p = stats.ks_pvalue(ok, sample, ok.size / deff) if sample.size else (float("nan"), None)
    out.append(check(family, name, value, psi_floor(len(edges) - 1, ok.size, deff, cfg), p,
                     ks=d, deff=deff, mean=float(ok.mean()), n=int(ok.size)))
    return out


def categorical_checks(name: str, values: list[Any], groups: np.ndarray,
                       stat: dict[str, Any], cfg: MonitorConfig) -> list[dict[str, Any]]:
    """Distribution (PSI + chi-square), missing rate and unseen categories of one column."""
    ref = {str(k): float(v) for k, v in (stat.get("fractions") or {}).items()}
    levels = list(ref)
    vals = np.array(["" if v is None else str(v) for v in values], dtype=object)
    miss = vals == ""
    ref_missing = float(stat.get("missing") or 0.0)
    deff = _deff(miss.astype(np.float64), groups, cfg)
    out = [check("missing", f"categorical:{name}", abs(miss.mean() - ref_missing),
                 cfg.missing_floor, stats.binom_pvalue(float(miss.mean()), len(vals) / deff,
                                                      ref_missing),
                 rate=float(miss.mean()), expected=ref_missing)]
    ok, g = vals[~miss], groups[~miss]
    if ok.size < MIN_ROWS or not levels:
        return out
    unseen = ~np.isin(ok, levels)
    new = sorted(set(ok[unseen].tolist()))
    out.append(check("unseen", name, float(unseen.mean()), cfg.unseen_floor, None,
                     categories=new[:20]))
    seen, gs = ok[~unseen], g[~unseen]
    counts = np.array([(seen == lv).sum() for lv in levels], dtype=np.float64)
    expected = np.array([ref[lv] for lv in levels])
    actual = np.r_[counts, unseen.sum()] / ok.size
    value = stats.psi(actual, np.r_[expected / expected.sum(), 0.0])
    indicators = [(seen == lv).astype(np.float64) for lv in levels] if seen.size else []
    deffs = [_deff(y, gs, cfg) for y in indicators if 0 < y.mean() < 1]
    deff = float(np.mean(deffs)) if deffs else 1.0
    p = stats.chi2_pvalue(counts, expected, deff) if counts.sum() >= MIN_ROWS else None
    out.append(check("categorical", name, value, psi_floor(len(levels) + 1, ok.size, deff, cfg),
                     p, deff=deff, n=int(ok.size)))
    return out


def review_check(scorer: str, flag: np.ndarray, groups: np.ndarray, expected: float,
                 cfg: MonitorConfig) -> dict[str, Any]:
    """The review rate of ``scorer``'s lesions against the bundle's expected rate."""
    rate = float(flag.mean())
    n_eff = flag.size / _deff(flag.astype(np.float64), groups, cfg)
    effect = abs(rate - expected) / expected if expected > 0 else rate
    return check("review", scorer, effect, cfg.review_floor,
                 stats.binom_pvalue(rate, n_eff, expected), rate=rate, expected=expected,
                 interval=stats.wilson(rate, n_eff, cfg.ci), n=int(flag.size))


def window_drift(frame: pl.DataFrame, reference: dict[str, Any],
                 cfg: MonitorConfig) -> list[dict[str, Any]]:
    """Every drift check of one window's lesions (inputs, crops, scores, review rate)."""
    groups = patient_codes(frame)
    found: list[dict[str, Any]] = []

    def numbers(col: str) -> np.ndarray:
        if col not in frame.columns:
            return np.full(frame.height, np.nan)
        return frame.get_column(col).cast(pl.Float64, strict=False).fill_null(
            np.nan).to_numpy()

    for name, stat in (reference.get("numeric") or {}).items():
        found += numeric_checks("numeric", name, numbers(name), groups, stat, cfg)
    for name, stat in (reference.get("categorical") or {}).items():
        values = (frame.get_column(name).cast(pl.String).to_list() if name in frame.columns
                  else [None] * frame.height)
        found += categorical_checks(name, values, groups, stat, cfg)
    for name, stat in (reference.get("crops") or {}).items():
        found += numeric_checks("crop", name, numbers(CROP_COLUMNS.get(name, name)), groups,
                                stat, cfg)
    for scorer in sorted(frame.get_column("scorer").unique().to_list()):
        mask = (frame.get_column("scorer") == scorer).to_numpy()
        part, g = frame.filter(mask), groups[mask]
        stat = (reference.get("scores") or {}).get(scorer)
        if stat:
            found += [c for c in numeric_checks(
                "score", scorer, part.get_column("score").to_numpy(), g, stat, cfg)
                if c["family"] == "score"]
        review = (reference.get("review") or {}).get(scorer)
        if review and part.height >= MIN_ROWS:
            found.append(review_check(scorer, part.get_column("flag").to_numpy() > 0, g,
                                      float(review["rate"]), cfg))
    return found
