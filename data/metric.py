"""The ISIC 2024 competition metric: partial ROC AUC above 80% true-positive rate.

Range 0-0.2: a constant score gives 0.02, a perfect ranking 0.2. Computed by integrating the
ROC above the TPR floor in numpy (``weighted_pauc``), which equals the competition's published
``roc_curve`` + interpolation form (``pauc_reference``) and sklearn's standardised ``max_fpr``
AUC (``pauc_sklearn``) to ~1e-12; tests check all three agree.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, roc_auc_score, roc_curve


def _validate(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    p = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"pauc: y_true has {y.size} values but y_score has {p.size}")
    if not np.all(np.isfinite(p)):
        raise ValueError("pauc: y_score contains NaN or infinite values")
    classes = np.unique(y)
    if not np.isin(classes, [0, 1]).all():
        raise ValueError(f"pauc: y_true must be 0/1, found {classes[:5].tolist()}")
    if classes.size < 2:
        raise ValueError(
            f"pauc: y_true has a single class ({classes.tolist()}); "
            "pAUC needs positives and negatives"
        )
    return y.astype(np.int64), p


MIN_TPR = 0.8  # the competition's pAUC region: TPR >= 0.8


def pauc(y_true: np.ndarray, y_score: np.ndarray, min_tpr: float = MIN_TPR) -> float:
    """Partial AUC of the ROC region with TPR >= ``min_tpr`` (competition: 0.8 -> range 0-0.2).

    Computed by :func:`weighted_pauc` with unit weights (one sort, no per-call validation of
    sklearn's): the stacker's weight search calls it thousands of times per run.
    """
    y, p = _validate(y_true, y_score)
    return float(weighted_pauc(y, p, np.ones((1, y.size)), min_tpr)[0])


def pauc_sklearn(y_true: np.ndarray, y_score: np.ndarray, min_tpr: float = MIN_TPR) -> float:
    """The same score from sklearn's standardised ``max_fpr`` AUC on flipped labels (kept so
    tests check :func:`pauc` against a second, independent implementation)."""
    y, p = _validate(y_true, y_score)
    m = 1.0 - min_tpr
    # flip: TPR >= min_tpr on the original problem is FPR <= m on the flipped one
    scaled = roc_auc_score(1 - y, -p, max_fpr=m)
    return float(0.5 * m**2 + (m - 0.5 * m**2) / 0.5 * (scaled - 0.5))


def weighted_pauc(y: np.ndarray, pred: np.ndarray, weights: np.ndarray,
                  min_tpr: float = MIN_TPR) -> np.ndarray:
    """pAUC above ``min_tpr`` for each row of ``weights`` (replicates x rows), vectorised.

    The ROC of the weighted rows (ties grouped: a tie crosses diagonally, as in sklearn's
    curve), integrated as ``int_{min_tpr}^1 (1 - FPR) dTPR`` with linear interpolation: the
    competition's score (unit weights: :func:`pauc`; patient-bootstrap counts: the paired
    comparison's and the subgroups' intervals).
    """
    order = np.argsort(-pred, kind="stable")
    s = pred[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last row of each tie group
    pos = (y[order] == 1).astype(np.float64)
    w = np.atleast_2d(weights)[:, order].astype(np.float64)
    tp = np.cumsum(w * pos, axis=1)[:, ends]
    fp = np.cumsum(w * (1 - pos), axis=1)[:, ends]
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.c_[np.zeros(len(w)), tp / tp[:, -1:]]
        fpr = np.c_[np.zeros(len(w)), fp / fp[:, -1:]]
    t0, t1, f0, f1 = tpr[:, :-1], tpr[:, 1:], fpr[:, :-1], fpr[:, 1:]
    lo = np.maximum(t0, min_tpr)
    span = np.where(t1 > t0, t1 - t0, 1.0)
    f_lo = f0 + (f1 - f0) * (lo - t0) / span
    area = np.where(t1 > lo, (t1 - lo) * (1 - (f_lo + f1) / 2), 0.0)
    return area.sum(axis=1)


def pauc_reference(y_true: np.ndarray, y_score: np.ndarray, min_tpr: float = 0.8) -> float:
    """The competition's published ``score()``: roc_curve, interpolated at FPR = 1 - min_tpr."""
    y, p = _validate(y_true, y_score)
    max_fpr = abs(1 - min_tpr)
    fpr, tpr, _ = roc_curve(np.abs(y - 1), -p)
    stop = np.searchsorted(fpr, max_fpr, "right")
    x_interp = [fpr[stop - 1], fpr[stop]]
    y_interp = [tpr[stop - 1], tpr[stop]]
    tpr = np.append(tpr[:stop], np.interp(max_fpr, x_interp, y_interp))
    fpr = np.append(fpr[:stop], max_fpr)
    return float(auc(fpr, tpr))


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Plain ROC AUC with the same input checks as :func:`pauc`."""
    y, p = _validate(y_true, y_score)
    return float(roc_auc_score(y, p))


def has_both_classes(y_true: np.ndarray) -> bool:
    """True when ``y_true`` holds positives and negatives (pAUC/AUC are defined)."""
    y = np.asarray(y_true).ravel()
    return y.size > 0 and 0 < int(y.sum()) < y.size


def fold_scores(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float | None]:
    """pAUC and AUC of one fold; both ``None`` when the fold lacks a class.

    The one convention for a fold with a single class, in every stage: its scores are undefined,
    so they are ``None`` (``null`` in JSON, ``n/a`` in logs), left out of the fold mean and std,
    and never reported to a pruner; the pooled OOF score still covers the fold's rows. (A small
    real subset or an aggressive fold count can leave a fold without positives; a made-up 0.0 or
    NaN there would drag or poison every mean.)
    """
    if not has_both_classes(y_true):
        return {"pauc": None, "auc": None}
    return {"pauc": pauc(y_true, y_score), "auc": roc_auc(y_true, y_score)}


def fmt_score(x: float | None) -> str:
    """A score for a log line: ``n/a`` for a fold without both classes."""
    return "n/a" if x is None else f"{x:.4f}"


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and std of the defined fold scores (``None``, ``None`` when no fold has one)."""
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return None, None
    return float(arr.mean()), float(arr.std())


def seed_spread(values: list[float | None]) -> dict[str, float | int | None]:
    """Mean and sample sd (ddof=1) of one figure repeated over fold seeds, and how many seeds.

    The benchmarks' one convention: runs without the figure (``None``) are left out, and the sd
    of fewer than two values is ``None`` (undefined), never 0.0, so one lucky split does not read
    as a figure without spread.
    """
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    return {"mean": float(arr.mean()) if arr.size else None,
            "sd": float(arr.std(ddof=1)) if arr.size > 1 else None, "n": int(arr.size)}


def fold_summary(y_true: np.ndarray, y_score: np.ndarray, fold: np.ndarray) -> dict[str, object]:
    """Pooled OOF pAUC/AUC plus per-fold scores (:func:`fold_scores`) and their mean and std."""
    y, p, f = np.asarray(y_true), np.asarray(y_score), np.asarray(fold)
    per = {int(k): fold_scores(y[f == k], p[f == k]) for k in np.unique(f)}
    fold_pauc = {k: s["pauc"] for k, s in per.items()}
    fold_auc = {k: s["auc"] for k, s in per.items()}
    pm, ps = mean_std(list(fold_pauc.values()))
    am, as_ = mean_std(list(fold_auc.values()))
    return {"oof_pauc": pauc(y, p), "oof_auc": roc_auc(y, p),
            "fold_pauc": fold_pauc, "fold_auc": fold_auc,
            "fold_pauc_mean": pm, "fold_pauc_std": ps, "fold_auc_mean": am, "fold_auc_std": as_}


TIE_BREAK = 1e-6  # weight of the squash in :func:`tie_break`


def tie_break(u: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``u`` (a monotone but possibly flat map of ``x``: a CDF, an isotonic fit) made strictly
    increasing in ``x`` by a tiny arctan squash of ``x``, so ties of the map never merge
    rows that ``x`` ranks apart (pAUC and the ranking are kept)."""
    return (1.0 - TIE_BREAK) * u + TIE_BREAK * (0.5 + np.arctan(x) / np.pi)


CLIP = 1e-6  # :func:`logit` clips probabilities to [CLIP, 1 - CLIP]


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), CLIP, 1.0 - CLIP)
    return np.log(p) - np.log1p(-p)
