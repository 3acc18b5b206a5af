"""Honest comparisons: repeated CV over fold seeds, and a paired test between two runs.

Every ISIC 2024 team lost ~0.01 pAUC from CV to the private board; a single split's gain of a
few thousandths is noise. ``isic evaluate`` scores a tabular configuration on several fold seeds
(same features, new patient-grouped folds each seed) and ``isic compare A B`` gives the paired
difference across the seeds both runs share, with a paired t-test p-value.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.config import load_config
from isicstack.data.folds import make_folds
from isicstack.data.io import DataError, write_json
from isicstack.data.metric import pauc, seed_spread
from isicstack.data.provenance import fold_hash

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    """Config of ``isic evaluate`` (``configs/evaluate.yaml``)."""

    name: str = "baseline"
    data_dir: str = "auto"
    artifacts: str = "artifacts"
    profile: str = "default"
    fold_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    n_folds: int = 5
    models: list[str] = field(default_factory=list)
    stage_overrides: list[str] = field(default_factory=list)


def eval_path(artifacts: str | Path, name: str) -> Path:
    """Where ``isic evaluate`` stores the per-seed scores of run ``name``."""
    return Path(artifacts) / "evals" / f"{name}.json"


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    """Repeated CV of the tabular configuration: OOF pAUC per model per fold seed."""
    from isicstack.tabular.cv import TabularConfig, cross_validate, prepare

    tab = load_config(TabularConfig, "tabular", cfg.profile,
                      [f"data_dir={cfg.data_dir}", f"artifacts={cfg.artifacts}",
                       *cfg.stage_overrides])
    names = cfg.models or [n for n, s in tab.models.items() if s.enabled]
    data = prepare(tab)
    frame = pl.DataFrame({"isic_id": data.train_ids, "patient_id": data.patient,
                          "target": data.y})
    scores: dict[str, dict[str, float]] = {n: {} for n in names}
    for seed in cfg.fold_seeds:
        folds = make_folds(frame, cfg.n_folds, seed)
        reused_oof_features(data.features.oof_folds, folds, seed, tab.features.oof_names)
        fold = folds.get_column("fold").to_numpy()
        for name in names:
            res = cross_validate(data.X, data.y, fold, tab.models[name], data.features.names,
                                 data.features.categorical, neg_ratio=tab.neg_ratio,
                                 bags=tab.bags, seed=tab.seed, threads=tab.threads)
            scores[name][str(seed)] = pauc(data.y, res.oof)
            log.info("fold seed %d  %s: OOF pAUC %.5f", seed, name, scores[name][str(seed)])
    summary = {n: seed_spread(list(s.values())) for n, s in scores.items()}
    out = {"name": cfg.name, "profile": cfg.profile, "overrides": cfg.stage_overrides,
           "n_folds": cfg.n_folds, "scores": scores, "summary": summary}
    write_json(out, eval_path(cfg.artifacts, cfg.name))
    for n, s in summary.items():
        sd = "(one seed: no sd)" if s["sd"] is None else f"± {s['sd']:.5f}"
        print(f"{cfg.name} {n}: OOF pAUC {s['mean']:.5f} {sd} over {s['n']} fold seed(s)")
    return out


def reused_oof_features(made_on: str | None, folds: pl.DataFrame, seed: int,
                        names: list[str]) -> None:
    """Refuse to score OOF-score features on folds other than the ones they were made on:
    on other folds a row's 'OOF' score came from a model that trained on it (a leak)."""
    if made_on is not None and fold_hash(folds) != made_on:
        raise DataError(
            f"evaluate: features.oof_names {names} are OOF scores made on the folds of "
            f"folds.parquet (fold hash {made_on}); fold seed {seed} gives other folds "
            f"({fold_hash(folds)}), on which those scores leak. Evaluate without the 'oof' "
            "features, or rerun the scoring stages per fold seed")


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Mean of b - a over shared seeds, its standard error, and the paired t-test p-value."""
    from scipy import stats

    seeds = sorted(set(a) & set(b), key=str)
    if len(seeds) < 2:
        raise ValueError(f"need at least 2 shared fold seeds to compare, have {seeds}")
    diff = np.array([b[s] - a[s] for s in seeds])
    sd = float(diff.std(ddof=1))
    if sd == 0.0:
        p = 1.0 if diff.mean() == 0 else 0.0
    else:
        p = float(stats.ttest_rel([b[s] for s in seeds], [a[s] for s in seeds]).pvalue)
    return {"n_seeds": len(seeds), "mean_diff": float(diff.mean()),
            "sem": sd / math.sqrt(len(seeds)), "p_value": p}


def compare(path_a: str | Path, path_b: str | Path, model: str | None = None
            ) -> dict[str, dict[str, float]]:
    """Paired comparison of two ``isic evaluate`` outputs (files or run names), per model."""
    def load(p: str | Path) -> dict:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no evaluation; run `isic evaluate name=...` first")
        return json.loads(path.read_text())

    a, b = load(path_a), load(path_b)
    models = [model] if model else sorted(set(a["scores"]) & set(b["scores"]))
    if not models:
        raise ValueError(f"{path_a} and {path_b} share no model")
    out = {m: paired_difference(a["scores"][m], b["scores"][m]) for m in models}
    for m, r in out.items():
        verdict = "significant" if r["p_value"] < 0.05 else "not significant"
        print(f"{m}: {b['name']} - {a['name']} = {r['mean_diff']:+.5f} ± {r['sem']:.5f} "
              f"(paired t-test over {r['n_seeds']} seeds, p = {r['p_value']:.3g}, {verdict})")
    return out
