"""Reference statistics of the training data (``reference.json`` of a bundle): what the model
saw, so a deployed model can tell when what it is asked about differs.

Per numeric input: deciles (the bins of a PSI), the share in each bin, missing rate, min / max
(the out-of-range rate) and a seeded sample (a two-sample test); per categorical input: the
share of each level (unseen categories, chi-square); crop statistics of a seeded sample of
training crops (a new camera: size, brightness, mean colour); each scorer's OOF score
distribution and review rate at its operating point. Pure functions on polars frames and
arrays; ``serving/bundle.py`` reads the files. The service logs :func:`crop_stats` of each
request's crop and the monitor compares: ONE function computes them for both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES

FORMAT = 1
CROP_KEYS = ("width", "height", "brightness", "mean_r", "mean_g", "mean_b")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 grey, as PIL's "L" conversion


def crop_stats(img: np.ndarray) -> dict[str, float]:
    """Size, brightness (mean grey, ITU-R 601) and mean colour of ONE decoded crop (H, W, 3)."""
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"crop_stats: expected an RGB image (H, W, 3), got shape {arr.shape}")
    means = arr.reshape(-1, 3).mean(axis=0, dtype=np.float64) if arr.size else np.zeros(3)
    r, g, b = (float(m) for m in means)
    return {"width": float(arr.shape[1]), "height": float(arr.shape[0]),
            "brightness": LUMA[0] * r + LUMA[1] * g + LUMA[2] * b,
            "mean_r": r, "mean_g": g, "mean_b": b}


def _finite(values: Any) -> tuple[np.ndarray, int]:
    """The finite values of ``values`` as float64 and how many there were in all."""
    if isinstance(values, pl.Series):
        values = values.cast(pl.Float64, strict=False).to_numpy()
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)], arr.size


def bin_fractions(edges: list[float], values: Any) -> list[float]:
    """Share of the finite ``values`` in each bin of ``edges``: ``(-inf, e1), [e1, e2), ...,
    [e_{k-1}, +inf)`` (the outer edges are open, so a deployed value outside the training range
    still lands in a bin; :func:`numeric_stat` and the monitor bin alike)."""
    x, _ = _finite(values)
    k = max(len(edges) - 1, 1)
    if x.size == 0:
        return [0.0] * k
    idx = np.searchsorted(np.asarray(edges[1:-1], dtype=np.float64), x, side="right")
    return (np.bincount(idx, minlength=k) / x.size).tolist()


def numeric_stat(values: Any, sample: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Deciles (``edges``: unique, 11 at most; ``[v, v]`` for a constant), ``fractions`` per bin,
    ``missing`` (share null / NaN), ``min``, ``max`` and a seeded ``sample`` of <= ``sample``
    values (``None`` / empty when every value is missing)."""
    x, n = _finite(values)
    missing = 1.0 - x.size / n if n else 0.0
    if x.size == 0:
        return {"edges": [], "fractions": [], "missing": missing, "min": None, "max": None,
                "sample": []}
    edges = np.unique(np.quantile(x, np.linspace(0, 1, 11))).tolist()
    if len(edges) == 1:
        edges = edges * 2
    pick = x if x.size <= sample else np.random.default_rng(seed).choice(x, sample, False)
    return {"edges": edges, "fractions": bin_fractions(edges, x), "missing": missing,
            "min": float(x.min()), "max": float(x.max()), "sample": [float(v) for v in pick]}


def categorical_stat(values: pl.Series) -> dict[str, Any]:
    """Share of each level among ALL rows (``fractions``, most frequent first) and ``missing``
    (null or empty)."""
    s = values.cast(pl.String)
    n = s.len()
    present = s.filter(s.is_not_null() & (s != ""))
    counts = present.value_counts(sort=True)
    fractions = {str(k): c / n for k, c in zip(counts.to_series(0).to_list(),
                                               counts["count"].to_list(), strict=True)}
    return {"fractions": fractions, "missing": 1.0 - present.len() / n if n else 0.0}


def input_stats(train: pl.DataFrame, sample: int = 2000, seed: int = 0
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``numeric`` and ``categorical`` statistics of the model inputs ``train`` holds (the
    test-file columns of ``data.schema``); a column it lacks is left out."""
    numeric = {c: numeric_stat(train.get_column(c), sample, seed + i)
               for i, c in enumerate(NUMERIC_FEATURES) if c in train.columns}
    categorical = {c: categorical_stat(train.get_column(c))
                   for c in CATEGORICAL_FEATURES if c in train.columns}
    return numeric, categorical


def crops_reference(stats: Iterable[Mapping[str, float]], sample: int = 2000, seed: int = 0
                    ) -> dict[str, Any]:
    """Per key of :data:`CROP_KEYS`, the :func:`numeric_stat` of the crops' :func:`crop_stats`."""
    rows = list(stats)
    return {k: numeric_stat([r[k] for r in rows], sample, seed) for k in CROP_KEYS}


def review(scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Share of ``scores`` at or above ``threshold`` (the expected review rate)."""
    x, _ = _finite(scores)
    return {"threshold": float(threshold), "rate": float((x >= threshold).mean()) if x.size
            else None, "n": int(x.size)}


def reference(train: pl.DataFrame, crop_rows: Iterable[Mapping[str, float]],
              scores: Mapping[str, np.ndarray], thresholds: Mapping[str, float],
              sample: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``reference.json``: the training rows' inputs, crops, each scorer's OOF scores (on the
    scale it outputs) and its review rate at ``thresholds[scorer]``."""
    numeric, categorical = input_stats(train, sample, seed)
    return {"format": FORMAT, "rows": train.height, "numeric": numeric,
            "categorical": categorical, "crops": crops_reference(crop_rows, sample, seed),
            "scores": {k: numeric_stat(v, sample, seed) for k, v in scores.items()},
            "review": {k: review(scores[k], t) for k, t in thresholds.items()}}
