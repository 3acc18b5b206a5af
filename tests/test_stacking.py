"""Stacking: level-2 methods, honest CV, the JSON contract (the stage end to end:
``test_stack_stage.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isicstack.data.metric import pauc
from isicstack.stacking.config import METHODS
from isicstack.stacking.methods import Stacker, cross_validate, fit_stacker
from isicstack.stacking.nested import nested_cross_validate, to_common_scale


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column 0 informative (a probability), 1 and 2 noise (a probability and a raw score)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int64)
    good = 1 / (1 + np.exp(-(2.5 * y + rng.normal(size=n) - 3)))
    X = np.column_stack([good, rng.random(n), rng.normal(size=n) * 4])
    return X, y, rng.integers(0, 3, n)


NAMES = ["good", "noise", "raw"]


def test_rank_weighted_finds_informative_input():
    X, y, _ = _data()
    st = fit_stacker("rank_weighted", X, y, NAMES)
    w = np.array(st.weights)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert w[0] > 0.8, w
    mean = fit_stacker("rank_mean", X, y, NAMES)
    assert mean.weights == pytest.approx([1 / 3] * 3)
    assert pauc(y, st.predict(X)) > pauc(y, mean.predict(X)) + 0.01


def test_rank_greedy_keeps_the_new_signal_that_copies_would_dilute():
    """Three near-copies of one model and one model of another signal: the equal-weight mean
    gives the second signal a quarter of the say, forward selection about half; pure noise gets
    no weight at all."""
    rng = np.random.default_rng(3)
    n = 6000
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a + b - 4.5)))).astype(int)
    copies = [a + rng.normal(scale=0.3, size=n) for _ in range(3)]
    X = np.column_stack([*copies, b + rng.normal(scale=0.3, size=n), rng.normal(size=n)])
    names = ["a1", "a2", "a3", "b", "noise"]
    st = fit_stacker("rank_greedy", X, y, names)
    w = np.array(st.weights)
    assert w.sum() == pytest.approx(1.0) and w[4] == 0.0, w
    assert 0.3 <= w[3] <= 0.7, w
    mean = fit_stacker("rank_mean", X, y, names)
    assert pauc(y, st.predict(X)) > pauc(y, mean.predict(X)) + 0.005


def test_logistic_on_logits():
    X, y, _ = _data()
    st = fit_stacker("logistic", X, y, NAMES)
    assert st.logit_inputs == [True, True, False]  # a raw score is not squashed twice
    assert st.weights[0] > 0.5 > max(abs(v) for v in st.weights[1:])
    p = st.predict(X)
    assert ((p > 0) & (p < 1)).all()
    assert pauc(y, p) == pytest.approx(pauc(y, X[:, 0]), abs=0.01)


@pytest.mark.parametrize("method", METHODS)
def test_rank_outputs_in_unit_interval_and_monotone(method: str):
    X, y, _ = _data()
    st = fit_stacker(method, X, y, NAMES)
    grid = np.column_stack([np.linspace(-5, 5, 101)] * 3)  # far outside the training ranges
    p = st.predict(grid)
    assert ((p >= 0) & (p <= 1)).all()
    if method != "logistic":
        assert (np.diff(p) > 0).all()  # strictly monotone: no ties beyond the CDF range


@pytest.mark.parametrize("method", METHODS)
def test_cv_scores_each_fold_with_a_model_not_fitted_on_it(method: str):
    X, y, fold = _data()
    cv = cross_validate(method, X, y, fold, NAMES)
    for k in range(3):
        st = fit_stacker(method, X[fold != k], y[fold != k], NAMES)
        np.testing.assert_allclose(cv.oof[fold == k], st.predict(X[fold == k]))
        full = fit_stacker(method, X, y, NAMES)  # would differ if fold k had been seen
        if method != "rank_mean":
            assert not np.allclose(cv.oof[fold == k], full.predict(X[fold == k]))


def test_leaked_input_is_not_scored_on_its_training_rows():
    """An input whose sign flips between folds is perfect in-sample, useless out of fold."""
    rng = np.random.default_rng(1)
    n = 4000
    y = (rng.random(n) < 0.1).astype(np.int64)
    fold = np.arange(n) % 2
    leak = np.where(fold == 0, 1.0, -1.0) * (y + 0.1 * rng.normal(size=n))
    X = np.column_stack([leak, rng.normal(size=n)])
    cv = cross_validate("logistic", X, y, fold, ["leak", "noise"])
    for k in (0, 1):
        m = fold == k
        in_sample = fit_stacker("logistic", X[m], y[m], ["leak", "noise"]).predict(X[m])
        assert pauc(y[m], in_sample) > 0.19
        assert cv.fold_pauc[k] < 0.02  # the other fold's sign: ranks the held-out fold backwards


@pytest.mark.parametrize("method", METHODS)
def test_json_round_trip_and_small_test_set(method: str):
    X, y, _ = _data()
    st = fit_stacker(method, X, y, NAMES)
    again = Stacker.from_dict(json.loads(json.dumps(st.to_dict())))
    rng = np.random.default_rng(5)
    X_new = X[rng.permutation(len(X))[:500]] * rng.uniform(0.9, 1.1, (500, 3))
    assert np.array_equal(again.predict(X_new), st.predict(X_new))
    rows = [3, 17, 400]
    assert np.array_equal(st.predict(X_new[rows]), st.predict(X_new)[rows])


def test_stacker_rejects_bad_input():
    X, y, _ = _data(500)
    st = fit_stacker("rank_mean", X, y, NAMES)
    with pytest.raises(ValueError, match="3 input column"):
        st.predict(X[:, :2])
    Xn = X.copy()
    Xn[4, 1] = np.nan
    with pytest.raises(ValueError, match="'noise'"):
        st.predict(Xn)
    d = st.to_dict()
    with pytest.raises(ValueError, match="unknown"):
        Stacker.from_dict({**d, "method": "mean"})
    with pytest.raises(ValueError, match="weights"):
        Stacker.from_dict({**d, "weights": [1.0]})
    with pytest.raises(ValueError, match="'raw'"):
        Stacker.from_dict({**d, "quantiles": {k: v for k, v in d["quantiles"].items()
                                              if k != "raw"}})
    with pytest.raises(ValueError, match="unknown stacking method"):
        fit_stacker("median", X, y, NAMES)


# --- nested choice of the method ------------------------------------------------------------

def test_nested_choice_never_sees_the_scored_fold():
    """Fold k's picks and scores depend only on the other folds: relabel fold k, nothing moves."""
    X, y, fold = _data(n=2400, seed=3)
    fold = fold % 3
    base = nested_cross_validate(list(METHODS), X, y, fold, NAMES)
    y2 = y.copy()
    in0 = fold == 0
    y2[in0] = np.random.default_rng(9).permutation(y2[in0])
    y2[np.flatnonzero(in0)[:5]] = 1
    moved = nested_cross_validate(list(METHODS), X, y2, fold, NAMES)
    assert moved.picks[0] == base.picks[0]
    np.testing.assert_array_equal(moved.oof[in0], base.oof[in0])
    assert not np.array_equal(moved.oof[~in0], base.oof[~in0])  # other folds trained on it


def test_nested_with_one_method_is_its_cv_on_one_scale():
    """One candidate: no choice, so per-fold pAUC equals the method's own CV; each fold's
    scores are the share of that fold's training rows the stacker scores below them (their
    empirical CDF) so that folds pool: a method whose raw scale differs between folds
    (logistic's intercept moves with each fold's prevalence) pools no worse."""
    X, y, fold = _data(n=3000, seed=4)
    cv = cross_validate("logistic", X, y, fold, NAMES)
    nested = nested_cross_validate(["logistic"], X, y, fold, NAMES)
    assert set(nested.picks.values()) == {"logistic"}
    for k in np.unique(fold):
        va = fold == k
        assert pauc(y[va], nested.oof[va]) == pytest.approx(pauc(y[va], cv.oof[va]), abs=1e-12)
    np.testing.assert_allclose(nested.oof, cv.scaled, rtol=0, atol=1e-12)
    tr, va = fold != 0, fold == 0  # fold 0 recomputed: the share of training rows below
    train = np.sort(fit_stacker("logistic", X[tr], y[tr], NAMES).predict(X[tr]))
    share = (np.searchsorted(train, cv.oof[va], "left")
             + np.searchsorted(train, cv.oof[va], "right")) / (2 * train.size)
    np.testing.assert_allclose(nested.oof[va], share, atol=2e-3)
    assert to_common_scale(np.arange(100.0), np.array([-1.0, 49.5, 1e3])).tolist() == \
        pytest.approx([0.0, 0.5, 1.0], abs=1e-5)


def test_pooling_mixed_methods_needs_one_scale():
    """Fold 0 scored by a [0, 1] rank method, fold 1 by raw logits: pooled naively the folds sort
    by method; on the common scale the pooled pAUC is close to the per-fold figures."""
    rng = np.random.default_rng(5)
    y = (rng.random(4000) < 0.05).astype(int)
    fold = np.repeat([0, 1], 2000)
    z = 2 * y + rng.normal(size=4000)
    raw = np.where(fold == 0, 1 / (1 + np.exp(-z)), 10 + z)  # two scales
    scaled = np.concatenate([to_common_scale(raw[fold == k], raw[fold == k]) for k in (0, 1)])
    per_fold = np.mean([pauc(y[fold == k], raw[fold == k]) for k in (0, 1)])
    assert pauc(y, raw) < per_fold - 0.02
    assert pauc(y, scaled) == pytest.approx(per_fold, abs=0.01)


# --- the stage end to end on mini_isic -------------------------------------------------------

def test_cv_pools_folds_on_one_scale():
    """A logistic stacker fitted where positives are common scores every row higher: pooled raw,
    the fold scored by it ranks by fold, not by risk; the scaled OOF (each fold through its own
    training rows' CDF) pools as well as the folds do, with the same per-fold pAUC."""
    rng = np.random.default_rng(7)
    fold = np.repeat([0, 1], 3000)
    y = (rng.random(6000) < np.where(fold == 0, 0.02, 0.25)).astype(np.int64)
    X = 1 / (1 + np.exp(-(1.5 * y[:, None] + rng.normal(size=(6000, 2)) - 2)))
    cv = cross_validate("logistic", X, y, fold, ["a", "b"])
    for k in (0, 1):
        va = fold == k
        assert pauc(y[va], cv.scaled[va]) == pytest.approx(pauc(y[va], cv.oof[va]), abs=1e-12)
    assert pauc(y, cv.scaled) > pauc(y, cv.oof) + 0.01
