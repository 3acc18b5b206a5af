"""One way to say "A beats B": paired statistics of two sets of runs on the same folds.

A fold seed's runs of A and B see the same rows and folds, so the comparison is paired. Two
figures, each with an interval, never a bare p-value:

* **Corrected repeated-CV t-test** (Nadeau & Bengio 2003; Bouckaert & Frank 2004) on the
  per-fold pAUC differences of every paired seed. The folds of one seed, and the seeds on the
  same rows, share training data, so the plain t-test's variance is too small; the correction
  multiplies it by ``1/J + n_test/n_train`` instead of ``1/J`` (J = seeds x folds).
* **Patient-level bootstrap** of the paired pooled-OOF pAUC difference (mean over seeds):
  patients are resampled with replacement, the same draw for A, B and every seed (their rows
  are the same), so the interval reflects which patients happen to be in the data.

The bootstrap holds the trained models fixed (test-set variation only); the corrected t-test
also covers training variation. A claim needs both to exclude zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from isicstack.data.metric import fold_scores, pauc, weighted_pauc


@dataclass
class Scored:
    """One run's OOF scores with what pairing and resampling need (rows in fold-file order)."""

    label: str
    fold_hash: str
    y: np.ndarray
    fold: np.ndarray
    patient: np.ndarray
    pred: np.ndarray
    conditions: dict[str, Any] | None = None


def fold_paucs(r: Scored) -> dict[int, float | None]:
    """pAUC of each fold (None: a fold without both classes)."""
    return {int(k): fold_scores(r.y[r.fold == k], r.pred[r.fold == k])["pauc"]
            for k in np.unique(r.fold)}


def corrected_t(a: list[Scored], b: list[Scored], ci: float = 0.95) -> dict[str, Any]:
    """Nadeau-Bengio corrected t-test on per-fold differences b - a of paired runs."""
    diffs, ratios = [], []
    for ra, rb in zip(a, b, strict=True):
        fa, fb = fold_paucs(ra), fold_paucs(rb)
        diffs += [fb[k] - fa[k] for k in fa if fa[k] is not None and fb[k] is not None]
        sizes = np.bincount(ra.fold.astype(np.int64) - int(ra.fold.min()))
        sizes = sizes[sizes > 0]
        ratios.append(float(np.mean(sizes / (sizes.sum() - sizes))))  # n_test / n_train
    d = np.asarray(diffs)
    j = d.size
    if j < 2:
        raise ValueError(f"corrected t-test: {j} fold difference(s); need at least 2")
    var = float(d.var(ddof=1)) * (1.0 / j + float(np.mean(ratios)))
    mean = float(d.mean())
    if var == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
        half = 0.0
    else:
        se = math.sqrt(var)
        p = float(2 * stats.t.sf(abs(mean / se), j - 1))
        half = float(stats.t.ppf(0.5 + ci / 2, j - 1) * se)
    return {"mean_fold_diff": mean, "n_fold_diffs": j, "df": j - 1,
            "corrected_se": math.sqrt(var), "p_value": p, "ci": [mean - half, mean + half],
            "ci_level": ci}


def percentile_interval(dist: np.ndarray, ci: float = 0.95) -> list[float] | None:
    """The central ``ci`` interval of a bootstrap distribution (None when no replicate is
    finite, e.g. none held a positive)."""
    dist = np.asarray(dist, dtype=np.float64)
    dist = dist[np.isfinite(dist)]
    if not dist.size:
        return None
    lo, hi = np.quantile(dist, [0.5 - ci / 2, 0.5 + ci / 2])
    return [float(lo), float(hi)]


def patient_draws(patient: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_boot, patients) count of each patient in each resample of patients, and each row's
    patient code: ``counts[:, codes]`` is the rows' weights."""
    _, codes = np.unique(np.asarray(patient).astype(str), return_inverse=True)
    n = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, size=(n_boot, n))
    flat = (pick + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n), codes


def bootstrap(a: list[Scored], b: list[Scored], n_boot: int = 1000, seed: int = 0,
              ci: float = 0.95, chunk: int = 100) -> dict[str, Any]:
    """Patient bootstrap of mean-over-seeds pooled OOF pAUC(b) - pAUC(a)."""
    ref = a[0]
    for r in [*a, *b]:
        if not (np.array_equal(r.patient, ref.patient) and np.array_equal(r.y, ref.y)):
            raise ValueError(f"bootstrap: {r.label} has other rows than {ref.label}")
    point = float(np.mean([pauc(rb.y, rb.pred) - pauc(ra.y, ra.pred)
                           for ra, rb in zip(a, b, strict=True)]))
    counts, codes = patient_draws(ref.patient, n_boot, seed)
    boot = []
    for start in range(0, n_boot, chunk):
        w = counts[start:start + chunk][:, codes]
        d = [weighted_pauc(rb.y, rb.pred, w) - weighted_pauc(ra.y, ra.pred, w)
             for ra, rb in zip(a, b, strict=True)]
        boot.append(np.mean(d, axis=0))
    dist = np.concatenate(boot)
    dist = dist[np.isfinite(dist)]  # a replicate without positives has no pAUC
    interval = percentile_interval(dist, ci)
    n = dist.size  # (k + 1) / (n + 1): never a p of 0 from a finite number of replicates
    p = float(min(1.0, 2 * min(((dist <= 0).sum() + 1) / (n + 1),
                               ((dist >= 0).sum() + 1) / (n + 1))))
    return {"pooled_oof_diff": point, "ci": interval, "ci_level": ci,
            "p_value": p, "n_boot": int(dist.size), "patients": int(np.unique(ref.patient).size)}


def pauc_interval(runs: list[Scored], n_boot: int = 1000, seed: int = 0, ci: float = 0.95,
                  chunk: int = 100) -> dict[str, Any]:
    """Mean over ``runs`` (fold seeds on the same rows) of the pooled OOF pAUC, with a patient
    bootstrap interval (one draw of patients shared by every run)."""
    ref = runs[0]
    counts, codes = patient_draws(ref.patient, n_boot, seed)
    boot = [np.mean([weighted_pauc(r.y, r.pred, counts[s:s + chunk][:, codes]) for r in runs],
                    axis=0) for s in range(0, n_boot, chunk)]
    dist = np.concatenate(boot)
    return {"oof_pauc": float(np.mean([pauc(r.y, r.pred) for r in runs])),
            "ci": percentile_interval(dist, ci), "ci_level": ci, "n_runs": len(runs),
            "n_boot": int(np.isfinite(dist).sum())}


def paired(a: list[Scored], b: list[Scored], n_boot: int = 1000, seed: int = 0
           ) -> dict[str, Any]:
    """Both tests on runs paired by fold hash; each side's per-seed pooled OOF pAUC too."""
    by_a, by_b = {r.fold_hash: r for r in a}, {r.fold_hash: r for r in b}
    shared = [h for h in by_a if h in by_b]
    if not shared:
        raise ValueError("no run of A shares its folds with a run of B: nothing to pair "
                         f"(A: {[r.label for r in a]}, B: {[r.label for r in b]})")
    pa, pb = [by_a[h] for h in shared], [by_b[h] for h in shared]
    # runs without a partner on the same folds are named, never dropped silently
    unpaired = [r.label for r in a if r.fold_hash not in by_b] + \
        [r.label for r in b if r.fold_hash not in by_a]
    t = corrected_t(pa, pb)
    boot = bootstrap(pa, pb, n_boot, seed) if n_boot else None
    significant = t["p_value"] < 0.05 and (boot is None or boot["p_value"] < 0.05)
    verdict = ("b higher" if t["mean_fold_diff"] > 0 else "a higher") if significant \
        else "no significant difference"
    return {"n_seeds": len(shared), "a": [r.label for r in pa], "b": [r.label for r in pb],
            "unpaired": unpaired,
            "tests": "corrected t and patient bootstrap" if boot else "corrected t only",
            "oof_pauc_a": [pauc(r.y, r.pred) for r in pa],
            "oof_pauc_b": [pauc(r.y, r.pred) for r in pb],
            "mean_oof_pauc_a": float(np.mean([pauc(r.y, r.pred) for r in pa])),
            "mean_oof_pauc_b": float(np.mean([pauc(r.y, r.pred) for r in pb])),
            "corrected_t": t, "bootstrap": boot,
            "verdict": verdict if boot else f"{verdict} (corrected t only: n_boot=0)"}
