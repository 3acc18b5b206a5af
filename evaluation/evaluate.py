"""Honest comparisons: repeated CV over fold seeds, and a paired test between two sets of runs.

Every ISIC 2024 team lost ~0.01 pAUC from CV to the private board; a single split's gain of a
few thousandths is noise. ``isic evaluate`` scores a tabular configuration on several fold seeds
(same features, new patient-grouped folds each seed) and keeps each seed's OOF scores;
``isic compare A B`` pairs two sets of runs by their folds, whatever stage made them (an
evaluation, or ``<artifacts>:<oof name>`` of any stage, image runs included), and prints the
difference with two intervals (``evaluation/paired.py``): the corrected repeated-CV t-test and a
patient bootstrap. Runs whose recorded conditions differ (CPU, bf16, GPU, Python, libraries;
within one stage threads, loader workers, precision: ``conditions.differing``) are refused
unless ``--allow-different-conditions``, which marks the result.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.conditions import describe, differing, run_conditions, usable_cores
from isicstack.data.folds import make_folds
from isicstack.data.io import DataError, write_json, write_parquet
from isicstack.data.metric import fold_summary, seed_spread
from isicstack.data.provenance import fold_hash
from isicstack.evaluation.compared_runs import FOLD_COLS, expand, load_eval
from isicstack.evaluation.config import EvaluateConfig
from isicstack.evaluation.paired import Scored, paired
from isicstack.settings.layers import load_config
from isicstack.tabular.config import TabularConfig
from isicstack.tabular.cv import cross_validate, prepare

log = logging.getLogger(__name__)


def eval_path(artifacts: str | Path, name: str) -> Path:
    """Where ``isic evaluate`` stores the per-seed scores of run ``name``."""
    return Path(artifacts) / "evals" / f"{name}.json"


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    """Repeated CV of the tabular configuration: OOF pAUC per model per fold seed."""
    tab = load_config(TabularConfig, "tabular", cfg.profile,
                      [f"data_dir={cfg.data_dir}", f"artifacts={cfg.artifacts}",
                       *cfg.stage_overrides])
    names = cfg.models or [n for n, s in tab.models.items() if s.enabled]
    data = prepare(tab)
    frame = pl.DataFrame({"isic_id": data.train_ids, "patient_id": data.patient,
                          "target": data.y})
    scores: dict[str, dict[str, float]] = {n: {} for n in names}
    fold_pauc: dict[str, dict[str, dict]] = {n: {} for n in names}
    files = {}
    out_path = eval_path(cfg.artifacts, cfg.name)
    for seed in cfg.fold_seeds:
        folds = make_folds(frame, cfg.n_folds, seed)
        reused_oof_features(data.features.oof_folds, folds, seed, tab.features.oof_names)
        fold = folds.get_column("fold").to_numpy()
        oofs = {}
        for name in names:
            res = cross_validate(data.X, data.y, fold, tab.models[name], data.features.names,
                                 data.features.categorical, neg_ratio=tab.neg_ratio,
                                 bags=tab.bags, seed=tab.seed, threads=tab.threads)
            summary = fold_summary(data.y, res.oof, fold)
            scores[name][str(seed)] = summary["oof_pauc"]
            fold_pauc[name][str(seed)] = summary["fold_pauc"]
            oofs[name] = res.oof
            log.info("fold seed %d  %s: OOF pAUC %.5f", seed, name, scores[name][str(seed)])
        rel = f"{cfg.name}/seed{seed}.parquet"  # the OOF scores isic compare pairs and resamples
        write_parquet(folds.select(FOLD_COLS).with_columns(
            *(pl.Series(n, v) for n, v in oofs.items())), out_path.parent / rel)
        files[str(seed)] = rel
    summary = {n: seed_spread(list(s.values())) for n, s in scores.items()}
    out = {"name": cfg.name, "profile": cfg.profile, "overrides": cfg.stage_overrides,
           "n_folds": cfg.n_folds, "scores": scores, "fold_pauc": fold_pauc,
           "summary": summary, "oof_files": files,
           "conditions": run_conditions(tab.threads or usable_cores(), stage="tabular")}
    write_json(out, out_path)
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


def side(spec: str, artifacts: str | Path, model: str | None) -> dict[str, list[Scored]]:
    """Runs of one side by model: ``<artifacts glob>:<oof name>`` (one model, named by the
    spec), or an evaluation (its name under ``<artifacts>/evals`` or its JSON path)."""
    path = Path(spec)
    if not path.is_file() and ":" in spec:
        return {model or "oof": expand(spec)}  # one OOF file per run: the key pairs sides
    if not path.is_file():
        path = eval_path(artifacts, spec)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no evaluation named {spec!r}; run `isic evaluate "
                                    f"name={spec}` first, or give <artifacts>:<oof name>")
    models = [model] if model else sorted(json.loads(path.read_text())["scores"])
    return {m: load_eval(path, m) for m in models}


def check_conditions(a: list[Scored], b: list[Scored], allow: bool) -> list[str]:
    """Keys of the recorded conditions that differ between any two runs compared (a DataError
    unless ``allow``: then the result carries them and the printout says so)."""
    keys = sorted({k for ra in a for rb in [*a, *b] for k in differing(ra.conditions,
                                                                       rb.conditions)})
    if keys and not allow:
        raise DataError(f"compare: the runs' recorded conditions differ in {keys} "
                        f"({a[0].label} vs {b[0].label}): a difference of settings would mix "
                        "with one of machine/Python/libraries/threads/precision. Rerun both "
                        "under the same conditions, or pass --allow-different-conditions to "
                        "mark it")
    return keys


def compare(spec_a: str, spec_b: str, model: str | None = None,
            artifacts: str | Path = "artifacts", n_boot: int = 1000,
            allow_different_conditions: bool = False, out: str | Path | None = None
            ) -> dict[str, dict[str, Any]]:
    """Paired comparison b - a per model shared by both sides (see the module docstring)."""
    a, b = side(spec_a, artifacts, model), side(spec_b, artifacts, model)
    models = sorted(set(a) & set(b))
    if not models:
        raise ValueError(f"{spec_a} and {spec_b} share no model ({sorted(a)} vs {sorted(b)}); "
                         "name one with --model")
    result = {}
    for m in models:
        differ = check_conditions(a[m], b[m], allow_different_conditions)
        r = paired(a[m], b[m], n_boot=n_boot)
        result[m] = {**r, "conditions_differ": differ,
                     "conditions": a[m][0].conditions, "conditions_text": describe(
                         a[m][0].conditions)}
        print(format_result(spec_a, spec_b, m, result[m]))
    if out:
        write_json({"a": spec_a, "b": spec_b, "results": result}, out)
    return result


def format_result(spec_a: str, spec_b: str, model: str, r: dict[str, Any]) -> str:
    """Two lines: the bootstrap interval of the pooled OOF difference, the corrected t-test."""
    t, boot = r["corrected_t"], r["bootstrap"]
    lines = [f"{model}: B - A  (A = {spec_a}, B = {spec_b}; {r['n_seeds']} paired fold "
             f"seed(s), mean OOF pAUC A {np.mean(r['oof_pauc_a']):.4f}, "
             f"B {np.mean(r['oof_pauc_b']):.4f})"]
    if boot:
        lines.append(f"  pooled OOF pAUC difference {boot['pooled_oof_diff']:+.4f}, 95% patient-"
                     f"bootstrap CI [{boot['ci'][0]:+.4f}, {boot['ci'][1]:+.4f}], "
                     f"p = {boot['p_value']:.3g} ({boot['patients']} patients)")
    lines.append(f"  per-fold pAUC difference {t['mean_fold_diff']:+.4f}, 95% CI [{t['ci'][0]:+.4f}"
                 f", {t['ci'][1]:+.4f}], corrected repeated-CV t-test p = {t['p_value']:.3g} "
                 f"({t['n_fold_diffs']} folds)")
    lines.append(f"  verdict: {r['verdict']}")
    if r.get("unpaired"):
        lines.append(f"  not paired (no run of the other side on the same folds), left out: "
                     f"{', '.join(r['unpaired'])}")
    if r["conditions_differ"]:
        lines.append(f"  WARNING: CONDITIONS DIFFER ({', '.join(r['conditions_differ'])}): not "
                     "a controlled comparison")
    return "\n".join(lines)
