"""The stack's honest CV when its method is chosen on OOF scores: selection nested in each fold.

Choosing the best of several level-2 methods by their cross-validated pAUC and reporting that
same figure is a best-of-N: on the synthetic default the margin of "stack over its best input"
was the size of that selection bias. Here the choice is one more step of the model: for each
outer fold k, every candidate method is cross-validated on the other folds only (leave one of
them out at a time), the best one there is fitted on all the other folds and scores fold k.
So fold k's scores never influenced which method scored them.

One scale: different methods give scores on different scales (a rank mean lives in [0, 1] as a
mean of CDF values, a logistic stacker's probabilities are mostly near 0), so pooling fold k's
scores from one method with fold j's from another would rank rows by method, not by risk (it
scored 0.055 on the synthetic default). Each outer fold's scores are therefore mapped through
the empirical CDF of the fitted stacker's scores on its own training rows: "the share of
training rows scored below this one". The map is monotone within a fold, so per-fold pAUC is
unchanged, and pooled OOF pAUC is comparable with the inputs' pooled OOF pAUC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isicstack.data.metric import has_both_classes, pauc
from isicstack.stacking.methods import cross_validate, fit_stacker, to_common_scale

__all__ = ["NestedCV", "choose", "nested_cross_validate", "to_common_scale"]


@dataclass
class NestedCV:
    """Nested OOF scores on one scale, and which method each outer fold picked (and why)."""

    oof: np.ndarray
    picks: dict[int, str]
    inner_pauc: dict[int, dict[str, float]]  # outer fold -> method -> inner pooled OOF pAUC


def choose(methods: list[str], X: np.ndarray, y: np.ndarray, fold: np.ndarray,
           inputs: list[str], n_quantiles: int, C: float) -> tuple[str, dict[str, float]]:
    """The method with the best pooled OOF pAUC of a CV over ``fold``, each fold's scores on
    one scale (ties: first listed)."""
    inner = {m: pauc(y, cross_validate(m, X, y, fold, inputs, n_quantiles, C).scaled)
             for m in methods}
    return max(methods, key=lambda m: inner[m]), inner


def nested_cross_validate(methods: list[str], X: np.ndarray, y: np.ndarray, fold: np.ndarray,
                          inputs: list[str], n_quantiles: int = 1001, C: float = 1.0
                          ) -> NestedCV:
    """Outer fold k scored by the method chosen on the other folds, fitted on them."""
    oof = np.full(len(y), np.nan)
    picks: dict[int, str] = {}
    inner_pauc: dict[int, dict[str, float]] = {}
    for k in sorted(int(v) for v in np.unique(fold)):
        tr, va = fold != k, fold == k
        if not has_both_classes(y[tr]):
            raise ValueError(f"stacking: folds other than {k} hold a single class")
        if len(methods) == 1:
            best, inner = methods[0], {}
        else:
            best, inner = choose(methods, X[tr], y[tr], fold[tr], inputs, n_quantiles, C)
        st = fit_stacker(best, X[tr], y[tr], inputs, n_quantiles, C)
        oof[va] = to_common_scale(st.predict(X[tr]), st.predict(X[va]), n_quantiles)
        picks[k], inner_pauc[k] = best, inner
    return NestedCV(oof, picks, inner_pauc)
