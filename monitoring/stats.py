"""The monitor's tests, written on scipy rather than taken from a monitoring library.

Why not Evidently or NannyML: both pull in pandas, plotly and many more packages for a handful
of formulas, neither knows that a window's lesions come in patients (ISIC: tens to hundreds of
lesions per patient), and neither corrects outcome figures for verification bias by flag stratum.
Lesions of one patient share age, sex, centre and skin, so a test that counts lesions as
independent alarms on a window that merely holds a few old patients. Every test here therefore
runs on an effective sample size ``n / deff``, with the design effect ``deff = 1 + (m - 1) ICC``
(Kish; ``m`` = size-weighted mean lesions per patient, ICC by one-way ANOVA over patients): for
the chi-square this is the first-order Rao-Scott correction.

PSI uses the reference's decile edges and its bins (``serving.reference.bin_fractions``: the
outer bins open, ``(-inf, e_1)`` and ``[e_k-1, +inf)``; values outside the training range also
count as out of range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

EPS = 1e-4  # PSI floor of a share (an empty bin would make it infinite)


def psi(actual: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of two share vectors: sum (a - e) ln(a / e)."""
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a, e = a / a.sum(), e / e.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def bin_index(x: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Each value's decile bin (0 .. len(edges) - 2), as ``serving.reference.bin_fractions``
    bins the reference."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64)[1:-1], x, side="right")


def shares(index: np.ndarray, k: int) -> np.ndarray:
    """Share of ``index`` values in each of ``k`` bins."""
    counts = np.bincount(index, minlength=k).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def icc(y: np.ndarray, codes: np.ndarray) -> float:
    """Intra-class correlation of ``y`` within groups (integer ``codes``; one-way ANOVA),
    clipped to [0, 1]."""
    y = np.asarray(y, dtype=np.float64)
    m_all = np.bincount(codes)
    present = m_all > 0
    m, g, n = m_all[present], int(present.sum()), y.size
    if g < 2 or n <= g:
        return 1.0 if g < 2 else 0.0
    means = np.zeros(m_all.size)
    means[present] = np.bincount(codes, weights=y)[present] / m
    msb = float(np.sum(m * (means[present] - y.mean()) ** 2) / (g - 1))
    msw = float(np.sum((y - means[codes]) ** 2) / (n - g))
    m0 = (n - float(np.sum(m**2)) / n) / (g - 1)
    den = msb + (m0 - 1) * msw
    return float(np.clip((msb - msw) / den, 0.0, 1.0)) if den > 0 else 0.0


def design_effect(y: np.ndarray, codes: np.ndarray | None) -> float:
    """Kish's ``1 + (m - 1) ICC`` of ``y`` clustered in groups (integer ``codes``; 1 without
    groups), ``m`` the size-weighted mean group size."""
    if codes is None or len(y) < 2:
        return 1.0
    m = np.bincount(codes).astype(np.float64)
    m_bar = float(np.sum(m**2) / m.sum())
    return max(1.0, 1.0 + (m_bar - 1.0) * icc(y, codes)) if m_bar > 1 else 1.0


def ks_pvalue(window: np.ndarray, reference: np.ndarray, n_eff: float) -> tuple[float, float]:
    """Two-sample KS statistic and its asymptotic p-value with the window's effective size."""
    a, b = np.sort(window), np.sort(reference)
    both = np.r_[a, b]  # D = the largest gap between the two empirical CDFs (as ks_2samp)
    d = float(np.max(np.abs(np.searchsorted(a, both, "right") / a.size
                            - np.searchsorted(b, both, "right") / b.size)))
    m = float(b.size)
    en = math.sqrt(n_eff * m / (n_eff + m))
    return d, float(min(1.0, stats.kstwobign.sf((en + 0.12 + 0.11 / en) * d)))


def chi2_pvalue(counts: np.ndarray, expected_shares: np.ndarray, deff: float) -> float:
    """Goodness of fit of ``counts`` to ``expected_shares``, Rao-Scott corrected by ``deff``;
    cells expected below 5 are pooled."""
    counts = np.asarray(counts, dtype=np.float64)
    e = np.asarray(expected_shares, dtype=np.float64)
    e = e / e.sum() * counts.sum()
    small = e < 5
    if small.any():
        counts = np.r_[counts[~small], counts[small].sum()]
        e = np.r_[e[~small], e[small].sum()]
        keep = e > 0
        counts, e = counts[keep], e[keep]
    if counts.size < 2:
        return 1.0
    x2 = float(np.sum((counts - e) ** 2 / e)) / deff
    return float(stats.chi2.sf(x2, counts.size - 1))


def binom_pvalue(share: float, n_eff: float, p0: float, side: str = "two-sided") -> float:
    """Exact binomial test of an observed ``share`` on ``n_eff`` effective trials against
    ``p0`` (counts rounded to whole effective trials; two-sided: the smaller tail doubled)."""
    n = max(1, int(round(n_eff)))
    k = int(round(share * n))
    p0 = min(max(p0, 1e-12), 1 - 1e-12)
    upper = float(stats.binom.sf(k - 1, n, p0))  # P(X >= k)
    if side == "greater":
        return upper
    return min(1.0, 2 * min(upper, float(stats.binom.cdf(k, n, p0))))  # doubled smaller tail


def wilson(share: float, n_eff: float, ci: float = 0.95) -> list[float]:
    """Wilson score interval of a proportion on ``n_eff`` effective trials."""
    z = float(stats.norm.ppf(0.5 + ci / 2))
    n = max(n_eff, 1e-9)
    mid = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, mid - half), min(1.0, mid + half)]


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections at family-wise error ``alpha`` (valid under any
    dependence between the tests, which drift tests of one window certainly have)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.zeros(p.size, dtype=bool)
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] > alpha / (p.size - rank):
            break
        out[i] = True
    return out.tolist()
