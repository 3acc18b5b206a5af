"""Level-2 methods over a matrix of level-1 scores (rows x inputs), fit and applied the same way.

Rank methods map every input through its OOF empirical CDF (stored as quantiles), never through
ranks within the scored set: a 3-row test set has ranks 1..3 whatever the scores, while the CDF
puts a test score where the same score sat among the training rows. The fitted state is a plain
dict (``Stacker.to_dict``) so offline inference needs no pickle and no training rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

from isicstack.data.metric import fold_scores, has_both_classes, logit, pauc, tie_break
from isicstack.stacking.config import METHODS

STEPS = (0.2, 0.1, 0.05, 0.02, 0.01)


def fit_cdf(x: np.ndarray, n_quantiles: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Strictly increasing quantile values of ``x`` and their CDF levels (ties averaged)."""
    x = np.asarray(x, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, max(2, min(n_quantiles, x.size)))
    values = np.quantile(x, levels)
    uniq, inverse = np.unique(values, return_inverse=True)
    probs = np.bincount(inverse, weights=levels) / np.bincount(inverse)
    return uniq, probs


def apply_cdf(x: np.ndarray, values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Map scores to [0, 1] through a fitted CDF; strictly monotone, also outside its range."""
    x = np.asarray(x, dtype=np.float64)
    u = np.interp(x, values, probs) if values.size > 1 else np.full(x.shape, 0.5)
    return tie_break(u, x)  # keeps order beyond the CDF range


@dataclass
class Stacker:
    """A fitted level-2 model: everything ``predict`` needs, JSON-serialisable."""

    method: str
    inputs: list[str]
    weights: list[float]
    intercept: float = 0.0
    quantiles: dict[str, list[float]] = field(default_factory=dict)
    levels: dict[str, list[float]] = field(default_factory=dict)
    logit_inputs: list[bool] = field(default_factory=list)

    def features(self, X: np.ndarray) -> np.ndarray:
        """The level-2 inputs: CDF values (rank methods) or logits (logistic)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.inputs):
            raise ValueError(f"stacker expects {len(self.inputs)} input column(s) "
                             f"{self.inputs}, got shape {X.shape}")
        bad = ~np.isfinite(X).all(axis=0)
        if bad.any():
            raise ValueError(f"stacker input {self.inputs[int(np.argmax(bad))]!r} has "
                             "NaN or infinite scores")
        cols = []
        for j, name in enumerate(self.inputs):
            if self.method == "logistic":
                cols.append(logit(X[:, j]) if self.logit_inputs[j] else X[:, j])
            else:
                cols.append(apply_cdf(X[:, j], np.asarray(self.quantiles[name]),
                                      np.asarray(self.levels[name])))
        return np.column_stack(cols)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Stacked score in [0, 1] for each row of ``X`` (rows x inputs, raw level-1 scores)."""
        z = self.features(X) @ np.asarray(self.weights) + self.intercept
        if self.method == "logistic":
            return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        return z

    def to_dict(self) -> dict:
        """Plain JSON-able state (the offline inference contract)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Stacker:
        """Rebuild a stacker from ``to_dict`` output; a clear error on an incomplete dict."""
        if d.get("method") not in METHODS:
            raise ValueError(f"stacker method {d.get('method')!r} unknown; known: {METHODS}")
        missing = [k for k in ("inputs", "weights") if k not in d]
        if missing:
            raise ValueError(f"stacker dict lacks key(s) {missing}")
        st = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        st.check()
        return st

    def check(self) -> None:
        """Every per-input part present and of matching size (a hand-edited JSON fails here)."""
        n = len(self.inputs)
        if len(self.weights) != n:
            raise ValueError(f"stacker: {len(self.weights)} weights for {n} inputs")
        if self.method == "logistic" and len(self.logit_inputs) != n:
            raise ValueError(f"stacker: {len(self.logit_inputs)} logit_inputs for {n} inputs")
        if self.method != "logistic":
            for name in self.inputs:
                q, lv = self.quantiles.get(name), self.levels.get(name)
                if q is None or lv is None or len(q) != len(lv) or not q:
                    raise ValueError(f"stacker: quantiles/levels of input {name!r} missing or "
                                     "of different lengths")


def simplex_search(score: Callable[[np.ndarray], float], n: int) -> np.ndarray:
    """Non-negative weights summing to 1 that maximise ``score``, by pairwise coordinate moves.

    Starts at equal weights and accepts only strict improvements, so a flat objective (tiny
    data) keeps the equal-weight baseline; deterministic, and cheap for a handful of inputs.
    """
    w = np.full(n, 1.0 / n)
    best = score(w)
    for step in STEPS if n > 1 else ():
        improved = True
        while improved:
            improved = False
            for i in range(n):
                for j in range(n):
                    if i == j or w[j] <= 0:
                        continue
                    cand = w.copy()
                    delta = min(step, cand[j])
                    cand[i] += delta
                    cand[j] -= delta
                    s = score(cand)
                    if s > best + 1e-12:
                        w, best, improved = cand, s, True
    return w


def greedy_selection(score: Callable[[np.ndarray], float], n: int, rounds: int = 0
                     ) -> np.ndarray:
    """Weights of a forward selection with replacement (Caruana et al. 2004), as shares.

    Starts from the single best input and adds, one copy at a time, the input whose addition
    scores best, stopping at the first round without a strict gain. Unlike ``simplex_search``,
    which starts from equal weights, it can keep only a few inputs: when the level-1 models
    repeat each other (a first and a second GBDT pass), averaging them all dilutes the one input
    that carries new signal. ``rounds`` caps the additions (0: ``2 n``).
    """
    counts = np.zeros(n)
    eye = np.eye(n)
    first = max(range(n), key=lambda j: score(eye[j]))
    counts[first] = 1.0
    best = score(counts)
    for _ in range(rounds or 2 * n):
        trial = [score((counts + eye[j]) / (counts.sum() + 1.0)) for j in range(n)]
        j = int(np.argmax(trial))  # ties: the first listed input
        if trial[j] <= best + 1e-12:
            break
        counts[j] += 1.0
        best = trial[j]
    return counts / counts.sum()


def fit_stacker(method: str, X: np.ndarray, y: np.ndarray, inputs: list[str],
                n_quantiles: int = 1001, C: float = 1.0) -> Stacker:
    """Fit ``method`` on level-1 scores ``X`` (rows x inputs) and labels ``y``."""
    if method not in METHODS:
        raise ValueError(f"unknown stacking method {method!r}; known: {', '.join(METHODS)}")
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[1]
    if method == "logistic":
        as_logit = [bool(np.all((X[:, j] >= 0) & (X[:, j] <= 1))) for j in range(n)]
        st = Stacker(method, list(inputs), [0.0] * n, logit_inputs=as_logit)
        lr = LogisticRegression(C=C, max_iter=1000).fit(st.features(X), y)
        st.weights = [float(v) for v in lr.coef_[0]]
        st.intercept = float(lr.intercept_[0])
        return st
    st = Stacker(method, list(inputs), [1.0 / n] * n)
    for j, name in enumerate(inputs):
        values, probs = fit_cdf(X[:, j], n_quantiles)
        st.quantiles[name], st.levels[name] = values.tolist(), probs.tolist()
    if method in ("rank_weighted", "rank_greedy") and n > 1:
        U = st.features(X)
        search = simplex_search if method == "rank_weighted" else greedy_selection
        st.weights = search(lambda w: pauc(y, U @ w), n).tolist()
    return st


def to_common_scale(train_scores: np.ndarray, scores: np.ndarray, n_quantiles: int = 1001
                    ) -> np.ndarray:
    """``scores`` as the empirical CDF of ``train_scores`` (monotone: order kept).

    Why: a fitted stacker's raw output moves between folds (a logistic stacker's intercept
    follows each fold's prevalence), so pooling several folds' raw outputs ranks rows partly
    by fold. Mapped through the CDF of that fold's own training-row scores, every fold is on one
    scale ("share of training rows scored below"); per-fold pAUC is unchanged.
    """
    values, probs = fit_cdf(train_scores, n_quantiles)
    return apply_cdf(scores, values, probs)


@dataclass
class CVScore:
    """Out-of-fold level-2 scores of one method and their per-fold pAUC.

    ``oof`` is each fold's raw stacker output (the scale ``Stacker.predict`` gives at
    inference); ``scaled`` is the same on one scale across folds (:func:`to_common_scale`),
    what every pooled figure and every choice among methods uses."""

    oof: np.ndarray
    scaled: np.ndarray
    fold_pauc: dict[int, float | None]  # None: the fold lacks a class (metric.fold_scores)


def cross_validate(method: str, X: np.ndarray, y: np.ndarray, fold: np.ndarray,
                   inputs: list[str], n_quantiles: int = 1001, C: float = 1.0) -> CVScore:
    """Fit on K-1 folds, score the held-out fold: the level-2 CV is as honest as level 1."""
    oof = np.full(len(y), np.nan)
    scaled = np.full(len(y), np.nan)
    fold_pauc: dict[int, float | None] = {}
    for k in sorted(int(v) for v in np.unique(fold)):
        tr, va = fold != k, fold == k
        if not has_both_classes(y[tr]):
            raise ValueError(f"stacking: folds other than {k} hold a single class")
        st = fit_stacker(method, X[tr], y[tr], inputs, n_quantiles, C)
        oof[va] = st.predict(X[va])
        scaled[va] = to_common_scale(st.predict(X[tr]), oof[va], n_quantiles)
        fold_pauc[k] = fold_scores(y[va], oof[va])["pauc"]
    return CVScore(oof, scaled, fold_pauc)
