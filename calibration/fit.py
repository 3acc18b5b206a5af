"""Calibrated risk from a ranking score: a prior correction, then a monotone map fitted out of fold.

Why two steps. The models train on rebalanced classes (GBDTs: negatives subsampled by
``neg_ratio`` and positives up-weighted by ``scale_pos_weight``; the CNN: ``data.neg_ratio``
negatives per positive, ``optim.pos_weight``), so a score estimates the odds of the *training*
mix, inflated by a known factor. Subtracting the log of that factor from the logit (the prior
shift of Elkan 2001, Saerens et al. 2002) is exact for a model calibrated on its training mix;
the map fitted on out-of-fold scores (Platt: a logistic curve of the shifted logit; isotonic: a
step function) fixes the rest (bagging, fold averaging, over-confident trees).

Both steps are increasing and every map ends with a tiny strictly increasing term (the same
``data.metric.tie_break`` as the stack's rank methods), so within one map the ranking, hence
pAUC, is unchanged: isotonic's flat steps do not create ties. A map is a plain dict
(``CalMap.to_dict``): inference needs no pickle and no training rows. This module fits maps;
the map itself and its ``apply`` are in ``calibration/maps.py``.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from isicstack.calibration.maps import METHODS, CalMap

ISO_FLOOR = 1e-5  # isotonic's empty end bins would claim risk 0 (infinite log loss)


def is_probability(pred: np.ndarray) -> bool:
    """Scores in [0, 1] are read as probabilities (through their logit); others as they are."""
    pred = np.asarray(pred)
    return bool(pred.size and np.all((pred >= 0) & (pred <= 1)))


def prior_shift(positives: int, negatives: int, neg_ratio: float = 0.0,
                pos_weight: float = 1.0) -> float:
    """Log of the factor by which training inflated the odds of a positive.

    Training kept ``min(negatives, neg_ratio * positives)`` negatives (``neg_ratio <= 0``: all)
    and weighted each positive ``pos_weight``: its odds are ``pos_weight * negatives / kept``
    times the data's. Subtract this from a score's logit to undo it.
    """
    if positives < 1 or negatives < 1 or pos_weight <= 0:
        raise ValueError(f"prior_shift: need positives, negatives and pos_weight > 0, got "
                         f"{positives}, {negatives}, {pos_weight}")
    kept = negatives if neg_ratio <= 0 else min(negatives, round(neg_ratio * positives))
    return math.log(pos_weight) + math.log(negatives / max(kept, 1))


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unpenalised logistic fit of ``y`` on ``z`` (standardised for conditioning)."""
    mu, sd = float(z.mean()), float(z.std()) or 1.0
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(((z - mu) / sd)[:, None], y)
    a = float(lr.coef_[0, 0]) / sd
    return a, float(lr.intercept_[0]) - a * mu


def _fit_isotonic(z: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators knots, end bins floored away from 0 and 1."""
    iso = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(z, y)
    ys = np.clip(iso.y_thresholds_, ISO_FLOOR, 1.0 - ISO_FLOOR)
    return iso.X_thresholds_.tolist(), ys.tolist()


def fit_map(pred: np.ndarray, y: np.ndarray, method: str = "platt", shift: float = 0.0,
            scale: str | None = None) -> CalMap:
    """Fit ``method`` on scores ``pred`` and 0/1 labels ``y`` (after the prior ``shift``)."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r} unknown; known: {', '.join(METHODS)}")
    y = np.asarray(y).astype(np.int64)
    if not 0 < int(y.sum()) < y.size:
        raise ValueError("calibration: the fitting rows need positives and negatives")
    scale = scale or ("logit" if is_probability(pred) else "raw")
    cal = CalMap(method, float(shift), scale, rows=int(y.size), positives=int(y.sum()))
    z = cal.z(pred)
    if method == "platt":
        a, b = _fit_platt(z, y)
        if a > 0:
            cal.a, cal.b = a, b
        else:  # a score unrelated (or anti-related) to the label: keep the prior map's order
            cal.method = "prior"
    elif method == "isotonic":
        cal.knots_x, cal.knots_y = _fit_isotonic(z, y)
    return cal


def nested_calibrate(pred: np.ndarray, y: np.ndarray, fold: np.ndarray, method: str = "platt",
                     shift: float = 0.0) -> tuple[np.ndarray, dict[int, CalMap]]:
    """Out-of-fold calibrated scores: fold k is mapped by a map fitted on the other folds only.

    The OOF scores of fold k came from models that never saw fold k; the map applied to them
    never saw fold k either, so the calibrated OOF is as honest as the scores it maps.
    """
    pred, y, fold = np.asarray(pred, dtype=np.float64), np.asarray(y), np.asarray(fold)
    scale = "logit" if is_probability(pred) else "raw"  # one scale for every fold's map
    out = np.full(pred.shape, np.nan)
    maps: dict[int, CalMap] = {}
    for k in sorted(int(v) for v in np.unique(fold)):
        held = fold == k
        try:
            maps[k] = fit_map(pred[~held], y[~held], method, shift, scale)
        except ValueError as err:
            raise ValueError(f"calibration: folds other than {k}: {err}") from err
        out[held] = maps[k].apply(pred[held])
    return out, maps
