import numpy as np
import pytest

from isicstack.data.metric import pauc, pauc_reference, pauc_sklearn, roc_auc


def test_constant_score_is_0_02():
    y = np.array([0, 1] * 50)
    assert pauc(y, np.zeros(100)) == pytest.approx(0.02, abs=1e-12)


def test_perfect_and_inverted():
    y = np.array([0] * 90 + [1] * 10)
    p = np.linspace(0, 1, 100)
    assert pauc(y, p) == pytest.approx(0.2, abs=1e-12)
    assert pauc(y, -p) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_published_form(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y = (rng.random(n) < rng.uniform(0.01, 0.4)).astype(int)
    y[:2] = [0, 1]
    p = y * rng.normal(1, 1, n) + rng.normal(0, 1, n)
    if seed % 2:
        p = np.round(p, 1)  # ties
    a, b, c = pauc(y, p), pauc_reference(y, p), pauc_sklearn(y, p)
    assert 0 <= a <= 0.2
    assert a == pytest.approx(b, abs=1e-9) and a == pytest.approx(c, abs=1e-12)


def test_other_min_tpr_range():
    y = np.array([0] * 50 + [1] * 50)
    assert pauc(y, np.arange(100), min_tpr=0.88) == pytest.approx(0.12, abs=1e-12)


def test_single_class_is_clear_error():
    with pytest.raises(ValueError, match="single class"):
        pauc(np.zeros(10), np.arange(10))


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        pauc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="0/1"):
        pauc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="2 values"):
        pauc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    assert roc_auc(np.array([0, 1]), np.array([0.1, 0.2])) == 1.0


def test_single_class_fold_convention():
    """One convention everywhere: a fold without both classes scores None, left out of means."""
    from isicstack.data.metric import fmt_score, fold_scores, fold_summary, has_both_classes

    y = np.array([0, 1, 0, 1, 0, 0, 0, 0])
    p = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.4, 0.5, 0.6])
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1])  # fold 1 has no positive
    assert has_both_classes(y[fold == 0]) and not has_both_classes(y[fold == 1])
    assert not has_both_classes(np.array([]))
    assert fold_scores(y[fold == 1], p[fold == 1]) == {"pauc": None, "auc": None}
    s = fold_summary(y, p, fold)
    assert s["fold_pauc"][1] is None and s["fold_pauc"][0] == pytest.approx(0.2)
    assert s["fold_pauc_mean"] == pytest.approx(0.2) and s["fold_pauc_std"] == 0.0
    assert fmt_score(None) == "n/a" and fmt_score(0.12345) == "0.1235"
    only_single = fold_summary(y, p, np.where(fold == 1, 1, 2))
    assert only_single["fold_pauc"][1] is None
