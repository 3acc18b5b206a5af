"""The stacking stage: level-2 model over level-1 OOF scores, its honest CV, and submission.csv.

Every method is scored out-of-fold over the shared folds (fit on K-1 folds, score the held-out
one). With ``method: auto`` the choice among them is part of the model, so the stack's CV is
nested (``stacking/nested.py``): each outer fold is scored by the method chosen on the other
folds only, on one score scale, and that nested OOF is ``oof/stack.parquet`` and the stack's
reported CV. The best method's own CV is kept beside it as ``best_of_methods``, labelled
optimistic (chosen on the same OOF it is scored on). The method chosen on all folds is refit on
all OOF rows and saved as JSON (``Stacker.to_dict``), the contract of offline inference.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from isicstack.conditions import run_conditions
from isicstack.data.folds import read_folds
from isicstack.data.io import DataError, write_json, write_parquet
from isicstack.data.layout import (
    ORACLE,
    SAMPLE_SUBMISSION,
    TEST_META,
    folds_path,
    oof_path,
    resolve_data_dir,
    run_dir,
    test_pred_path,
)
from isicstack.data.metric import fmt_score, fold_summary, pauc
from isicstack.data.predictions import (
    STACK_PREFIX,
    discover,
    read_predictions,
    read_run_oof,
    read_run_test,
)
from isicstack.data.provenance import describe_inputs, fold_hash
from isicstack.ledger.finish import finish_run
from isicstack.ledger.result import RunResult, fold_scores_of
from isicstack.settings.layers import tuned_record
from isicstack.stacking.config import METHODS, StackConfig
from isicstack.stacking.methods import cross_validate, fit_stacker
from isicstack.stacking.nested import nested_cross_validate
from isicstack.stacking.submission import write_submission

log = logging.getLogger(__name__)

NAME = "stack"


def choose_inputs(cfg: StackConfig) -> list[str]:
    """The configured level-1 names, or every OOF file found (logged, since it is implicit)."""
    if cfg.inputs:
        own = [n for n in cfg.inputs if n.startswith(STACK_PREFIX)]
        if own:
            raise DataError(f"stack: config key 'inputs' names level-2 output(s) {own}")
        return list(cfg.inputs)
    names = discover(cfg.artifacts)
    if not names:
        raise FileNotFoundError(f"{oof_path(cfg.artifacts, '*')}: no OOF predictions to stack; "
                                "run train-tabular / train-image first")
    log.info("stack: inputs (all OOF files in %s): %s", oof_path(cfg.artifacts, "x").parent,
             ", ".join(names))
    return names


@dataclass
class Level1:
    """The level-1 OOF matrix aligned to the folds: what every level-2 method consumes."""

    inputs: list[str]
    folds: pl.DataFrame
    X: np.ndarray
    y: np.ndarray
    fold: np.ndarray


def load_level1(cfg: StackConfig) -> Level1:
    """Read and check every input's OOF file against ``folds.parquet`` (also used by tuning)."""
    folds = read_folds(cfg.artifacts)
    inputs = choose_inputs(cfg)
    X = np.column_stack([read_run_oof(cfg.artifacts, n, folds) for n in inputs])
    return Level1(inputs, folds, X, folds.get_column("target").to_numpy().astype(np.int64),
                  folds.get_column("fold").to_numpy())


def check_methods(cfg: StackConfig) -> list[str]:
    """The methods to cross-validate; the chosen one must be among them."""
    bad = [m for m in cfg.candidates if m not in METHODS]
    if bad or not cfg.candidates:
        raise ValueError(f"stack: config key 'candidates' {cfg.candidates}: use {METHODS}")
    if cfg.method not in ("auto", *METHODS):
        raise ValueError(f"stack: config key 'method' {cfg.method!r}: use auto or {METHODS}")
    if cfg.method != "auto" and cfg.method not in cfg.candidates:
        return [*cfg.candidates, cfg.method]
    return list(cfg.candidates)


def oracle_scores(data_dir: Path, folds: pl.DataFrame, stack_oof: np.ndarray,
                  test: pl.DataFrame | None) -> dict[str, Any] | None:
    """Synthetic data only: the true probability's pAUC on the same rows, and the stack's share."""
    path = data_dir / ORACLE
    if not path.is_file():
        return None
    oracle = pl.read_parquet(path)
    train = folds.select("isic_id").join(oracle, on="isic_id", how="left", maintain_order="left")
    if train.get_column("prob").null_count():
        log.warning("%s does not cover the train rows; oracle comparison skipped", path)
        return None
    y = folds.get_column("target").to_numpy()
    best = pauc(y, train.get_column("prob").to_numpy())
    out: dict[str, Any] = {"oracle_pauc": best, "stack_pauc": pauc(y, stack_oof),
                           "stack_fraction": pauc(y, stack_oof) / best}
    if test is not None:
        t = test.join(oracle, on="isic_id", how="inner", maintain_order="left")
        ty = t.get_column("target").to_numpy()
        if t.height == test.height and ty.min() != ty.max():
            out["test_oracle_pauc"] = pauc(ty, t.get_column("prob").to_numpy())
            out["test_stack_pauc"] = pauc(ty, t.get_column("pred").to_numpy())
            out["test_stack_fraction"] = out["test_stack_pauc"] / out["test_oracle_pauc"]
    return out


def load_test_inputs(cfg: StackConfig, data_dir: Path, inputs: list[str]
                ) -> tuple[pl.Series, np.ndarray] | None:
    """Test ids (test-metadata order) and each input's test scores; None when there is no test."""
    meta = data_dir / TEST_META
    if meta.is_file():
        ids = pl.read_csv(meta, columns=["isic_id"], infer_schema=False).get_column("isic_id")
    else:
        have = [n for n in inputs if test_pred_path(cfg.artifacts, n).is_file()]
        if not have:
            log.warning("stack: no %s and no test predictions; skipping the test set", meta)
            return None
        ids = read_predictions(test_pred_path(cfg.artifacts, have[0]), "test").get_column("isic_id")
    return ids, np.column_stack([read_run_test(cfg.artifacts, n, ids) for n in inputs])


def print_summary(result: RunResult) -> None:
    """A table of each input and each method: OOF pAUC/AUC, fold spread, the chosen one."""
    table = Table(title="stacking CV (out-of-fold; OOF = pooled over folds, fold = per-fold mean)")
    for col in ("model", "kind", "OOF pAUC", "OOF AUC", "fold pAUC mean ± std"):
        table.add_column(col, justify="right")
    d = result.details
    rows = [(n, "input", m) for n, m in d["inputs"].items()]
    rows += [(n + (" *" if n == d["chosen"] else ""),
              "method (optimistic)" if d["cv"]["kind"] == "nested" else "method", m)
             for n, m in d["methods"].items()]
    rows.append(("stack", d["cv"]["kind"], {
        "oof_pauc": result.pauc, "oof_auc": result.auc,
        "fold_pauc_mean": result.fold_pauc_mean, "fold_pauc_std": result.fold_pauc_std}))
    for name, kind, m in rows:
        table.add_row(name, kind, f"{m['oof_pauc']:.4f}", f"{m['oof_auc']:.4f}",
                      f"{fmt_score(m['fold_pauc_mean'])} ± {fmt_score(m['fold_pauc_std'])}")
    Console().print(table)
    if d.get("oracle"):
        o = d["oracle"]
        Console().print(f"oracle pAUC {o['oracle_pauc']:.4f}; stack = "
                        f"{100 * o['stack_fraction']:.1f}% of it")


def stack_cv(cfg: StackConfig, methods: list[str], X: np.ndarray, y: np.ndarray,
             fold: np.ndarray, inputs: list[str], oofs: dict[str, np.ndarray], chosen: str
             ) -> tuple[np.ndarray, dict[str, Any]]:
    """The stack's OOF scores and how they were made: nested when ``auto`` chooses among
    several methods, else the configured method's own CV (no choice was made on OOF scores)."""
    if cfg.method != "auto" or len(methods) == 1:
        return oofs[chosen], {"kind": "single method", "method": chosen}
    nested = nested_cross_validate(methods, X, y, fold, inputs, cfg.n_quantiles,
                                   cfg.logistic_c)
    log.info("stack: nested CV (method chosen inside each fold: %s) OOF pAUC %.4f; best "
             "method's own CV %.4f (optimistic)", nested.picks, pauc(y, nested.oof),
             pauc(y, oofs[chosen]))
    return nested.oof, {"kind": "nested", "picks": nested.picks,
                        "inner_pauc": nested.inner_pauc,
                        "scale": "per outer fold, the CDF of the stacker's scores on its "
                                 "training rows"}


def run(cfg: StackConfig) -> list[RunResult]:
    """``isic stack``: CV of every method, refit of the chosen one, level-2 OOF/test, submission.
    Its result (one run folder, ``runs/stack``)."""
    started = time.perf_counter()
    methods = check_methods(cfg)
    data_dir = resolve_data_dir(cfg.data_dir, cfg.profile)
    data = load_level1(cfg)
    inputs, folds, X, y, fold = data.inputs, data.folds, data.X, data.y, data.fold
    test = load_test_inputs(cfg, data_dir, inputs)  # fail on missing test files before the CV

    details: dict[str, Any] = {"inputs": {n: fold_summary(y, X[:, j], fold)
                                          for j, n in enumerate(inputs)}, "methods": {}}
    oofs = {}
    for m in methods:
        cv = cross_validate(m, X, y, fold, inputs, cfg.n_quantiles, cfg.logistic_c)
        oofs[m] = cv.scaled  # one scale across folds: the pooled figures compare methods
        details["methods"][m] = fold_summary(y, cv.scaled, fold)
        log.info("stack %-13s CV pAUC %.4f (folds %s ± %s)", m,
                 details["methods"][m]["oof_pauc"],
                 fmt_score(details["methods"][m]["fold_pauc_mean"]),
                 fmt_score(details["methods"][m]["fold_pauc_std"]))
    chosen = cfg.method if cfg.method != "auto" else max(
        methods, key=lambda m: details["methods"][m]["oof_pauc"])  # ties: first listed
    stack_oof, details["cv"] = stack_cv(cfg, methods, X, y, fold, inputs, oofs, chosen)
    details["best_of_methods"] = {"method": chosen, **details["methods"][chosen],
                                  "note": "optimistic: the method was chosen on these OOF "
                                          "scores" if details["cv"]["kind"] == "nested"
                                  else "the configured method (no choice on OOF scores)"}
    stacker = fit_stacker(chosen, X, y, inputs, cfg.n_quantiles, cfg.logistic_c)
    log.info("stack: chose %s (%s); weights %s", chosen, cfg.method,
             dict(zip(inputs, np.round(stacker.weights, 4).tolist(), strict=True)))

    out = run_dir(cfg.artifacts, NAME)
    write_parquet(pl.DataFrame({"isic_id": folds.get_column("isic_id"),
                                "fold": pl.Series(fold, dtype=pl.Int16), "pred": stack_oof}),
                  oof_path(cfg.artifacts, NAME))
    test_frame = None
    if test is not None:
        test_frame = pl.DataFrame({"isic_id": test[0], "pred": stacker.predict(test[1])})
        write_parquet(test_frame, test_pred_path(cfg.artifacts, NAME))
    own = fold_summary(y, stack_oof, fold)
    details.update(chosen=chosen, method=cfg.method, input_names=inputs,
                   weights=stacker.weights,
                   oracle=oracle_scores(data_dir, folds, stack_oof, test_frame))
    write_json(stacker.to_dict(), out / "stacker.json")
    read = {"folds": folds_path(cfg.artifacts),
            **{f"oof:{n}": oof_path(cfg.artifacts, n) for n in inputs},
            **{f"test:{n}": test_pred_path(cfg.artifacts, n) for n in inputs}}
    hashed = fold_hash(folds)
    result = RunResult("stack", NAME, own["oof_pauc"], own["oof_auc"], len(y), int(y.sum()),
                       fold_scores_of(own["fold_pauc"], own["fold_auc"]), fold_hash=hashed,
                       details=details)
    result = finish_run(result, out, cfg, cfg.artifacts, started, provenance={
        "inputs": describe_inputs(read), "fold_hash": hashed,
        "conditions": run_conditions(1), "tuned": tuned_record(cfg)})
    if cfg.submission and test_frame is not None and (data_dir / TEST_META).is_file():
        sample = data_dir / SAMPLE_SUBMISSION
        write_submission(test_frame, data_dir / TEST_META, sample if sample.is_file() else None,
                         Path(cfg.artifacts) / "submission.csv")
    print_summary(result)
    return [result]
