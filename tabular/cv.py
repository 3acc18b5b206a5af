"""The tabular stage: features once, then patient-grouped CV of every configured GBDT.

Per fold and bag: a fresh negative downsample (all positives kept), a model trained with its own
seed, predictions on the held-out fold and on the test rows. Bags are averaged; test predictions
are averaged over folds. ``cross_validate`` is pure (arrays in, predictions out) so the Optuna
objective reuses it instead of copying the loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from isicstack.conditions import run_conditions, usable_cores
from isicstack.data.folds import read_folds
from isicstack.data.io import DataError, load_metadata, write_csv, write_json, write_parquet
from isicstack.data.layout import (
    TEST_META,
    TRAIN_META,
    folds_path,
    oof_path,
    resolve_data_dir,
    run_dir,
    test_pred_path,
)
from isicstack.data.metric import fmt_score, fold_scores, pauc, roc_auc
from isicstack.data.provenance import describe_inputs, fold_hash
from isicstack.features.build import FeatureSet, build_features
from isicstack.ledger.finish import finish_run
from isicstack.ledger.result import RunResult, fold_scores_of
from isicstack.settings.layers import tuned_record
from isicstack.tabular.config import ModelSpec, TabularConfig
from isicstack.tabular.models import make_model

log = logging.getLogger(__name__)


@dataclass
class CVResult:
    """Out-of-fold and test predictions of one model, with per-fold scores."""

    oof: np.ndarray
    test: np.ndarray | None
    fold_pauc: dict[int, float | None]
    fold_auc: dict[int, float | None]
    seconds: float
    models: list[Any] = field(default_factory=list)
    fit_seconds: float = 0.0  # of ``seconds``: in the GBDT library's fit (the rest: predict)


def downsample(y: np.ndarray, neg_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of all positives plus ``neg_ratio`` negatives per positive (0: keep all rows)."""
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    if neg_ratio <= 0 or len(neg) <= neg_ratio * len(pos):
        return np.arange(len(y))
    keep = rng.choice(neg, size=int(round(neg_ratio * len(pos))), replace=False)
    return np.sort(np.concatenate([pos, keep]))


def to_matrix(frame: pl.DataFrame, names: list[str]) -> np.ndarray:
    """Float32 matrix of ``names`` (nulls -> NaN), the layout every GBDT here consumes."""
    return frame.select(pl.col(names).cast(pl.Float32)).to_numpy()


def cross_validate(
    X: np.ndarray, y: np.ndarray, fold: np.ndarray, spec: ModelSpec, names: list[str],
    categorical: list[str], *, X_test: np.ndarray | None = None, neg_ratio: float = 0.0,
    bags: int = 1, seed: int = 0, threads: int = 0,
    on_fold: Callable[[int, float | None], None] | None = None, keep_models: bool = False,
) -> CVResult:
    """K-fold CV of one GBDT; ``on_fold(k, pauc)`` is called after each fold (e.g. pruning).

    A fold without both classes scores ``None`` (see :func:`~isicstack.data.metric.fold_scores`).
    """
    start = time.perf_counter()
    fit_s = 0.0
    oof = np.full(len(y), np.nan)
    test = np.zeros(len(X_test)) if X_test is not None else None
    fold_ids = sorted(int(k) for k in np.unique(fold))
    fold_pauc: dict[int, float | None] = {}
    fold_auc: dict[int, float | None] = {}
    models = []
    for k in fold_ids:
        tr, va = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        pred = np.zeros(len(va))
        shared: tuple[np.ndarray, Any] | None = None  # (rows, the library's training set)
        for b in range(bags):
            bag_seed = seed + 1000 * k + b
            idx = tr[downsample(y[tr], neg_ratio, np.random.default_rng(bag_seed))]
            model = make_model(spec.kind, spec.params, spec.num_rounds, threads)
            t_fit = time.perf_counter()
            if bags > 1 and (shared is None or not np.array_equal(shared[0], idx)):
                shared = (idx, model.prepare(X[idx], y[idx], names, categorical))
            model.fit(X[idx], y[idx], names, categorical, bag_seed,
                      prepared=shared[1] if shared is not None else None)
            fit_s += time.perf_counter() - t_fit
            pred += model.predict(X[va]) / bags
            if test is not None:
                test += model.predict(X_test) / (bags * len(fold_ids))
            if keep_models:
                models.append((k, b, model))
        oof[va] = pred
        fs = fold_scores(y[va], pred)
        fold_pauc[k], fold_auc[k] = fs["pauc"], fs["auc"]
        if fs["pauc"] is None:
            log.warning("fold %d has a single class; its pAUC is undefined (n/a)", k)
        log.info("  %s fold %d/%d: pAUC %s  AUC %s  (%d train rows/bag)", spec.kind, k + 1,
                 len(fold_ids), fmt_score(fs["pauc"]), fmt_score(fs["auc"]), len(idx))
        if on_fold is not None:
            on_fold(k, fold_pauc[k])
    return CVResult(oof, test, fold_pauc, fold_auc, time.perf_counter() - start, models, fit_s)


@dataclass
class TabularData:
    """Features, labels and folds aligned row by row (what every model of the stage consumes)."""

    features: FeatureSet
    train_ids: pl.Series
    patient: np.ndarray
    y: np.ndarray
    fold: np.ndarray
    X: np.ndarray
    X_test: np.ndarray | None
    provenance: dict[str, Any] = field(default_factory=dict)  # what was read, by content
    features_seconds: float = 0.0


def prepare(cfg: TabularConfig) -> TabularData:
    """Load metadata, attach the shared folds and build the configured features."""
    data_dir = resolve_data_dir(cfg.data_dir, cfg.profile)
    train = load_metadata(data_dir / TRAIN_META, "train")
    test_file = data_dir / TEST_META
    test = load_metadata(test_file, "test") if test_file.is_file() else None
    folds = read_folds(cfg.artifacts)
    joined = train.select("isic_id", "target").join(
        folds.select("isic_id", "fold"), on="isic_id", how="left", maintain_order="left")
    if joined.get_column("fold").null_count():
        missing = joined.filter(pl.col("fold").is_null()).get_column("isic_id")[0]
        raise DataError(f"{data_dir / TRAIN_META}: isic_id {missing!r} has no fold in "
                        f"{cfg.artifacts}/folds.parquet; the folds were made for other data")
    t0 = time.perf_counter()
    fs = build_features(train, test, cfg.features, cfg.artifacts)
    features_s = time.perf_counter() - t0
    log.info("features: %d numeric + %d categorical on %d train rows in %.1fs",
             len(fs.numeric), len(fs.categorical), train.height, features_s)
    X_test = to_matrix(fs.test, fs.names) if fs.test is not None else None
    paths: dict[str, Any] = {"folds": folds_path(cfg.artifacts),
                             "train_meta": data_dir / TRAIN_META, "test_meta": test_file}
    for n in cfg.features.oof_names if "oof" in cfg.features.groups else []:
        paths[f"oof:{n}"], paths[f"test:{n}"] = (oof_path(cfg.artifacts, n),
                                                 test_pred_path(cfg.artifacts, n))
    provenance = {"inputs": describe_inputs(paths), "fold_hash": fold_hash(folds)}
    return TabularData(fs, train.get_column("isic_id"), train.get_column("patient_id").to_numpy(),
                       joined.get_column("target").to_numpy(),
                       joined.get_column("fold").to_numpy(), to_matrix(fs.train, fs.names),
                       X_test, provenance, round(features_s, 2))


def write_outputs(cfg: TabularConfig, name: str, data: TabularData,
                  res: CVResult) -> RunResult:
    """OOF/test parquet, native models, importances, metrics and config of model ``name``."""
    write_parquet(pl.DataFrame({"isic_id": data.train_ids,
                                "fold": pl.Series(data.fold, dtype=pl.Int16),
                                "pred": res.oof}), oof_path(cfg.artifacts, name))
    if res.test is not None and data.features.test is not None:
        write_parquet(pl.DataFrame({"isic_id": data.features.test.get_column("isic_id"),
                                    "pred": res.test}), test_pred_path(cfg.artifacts, name))
    out = run_dir(cfg.artifacts, name)
    names = data.features.names
    if res.models:
        gain = np.zeros(len(names))
        for k, b, model in res.models:
            model.save(out / "models" / f"fold{k}_bag{b}")
            imp = model.importance(names)
            gain += np.array([imp.get(n, 0.0) for n in names])
        write_csv(pl.DataFrame({"feature": names, "gain": gain / len(res.models)})
                  .sort("gain", descending=True), out / "importance.csv")
    write_json({"numeric": data.features.numeric, "categorical": data.features.categorical,
                "categories": data.features.categories}, out / "features.json")
    result = RunResult(
        "tabular", name, pauc(data.y, res.oof), roc_auc(data.y, res.oof), len(data.y),
        int(data.y.sum()), fold_scores_of(res.fold_pauc, res.fold_auc), round(res.seconds, 2),
        data.provenance.get("fold_hash"),
        {"n_features": len(names), "features_seconds": data.features_seconds,
         "fit_seconds": round(res.fit_seconds, 2)})
    return finish_run(result, out, cfg, cfg.artifacts, provenance={
        "inputs": data.provenance.get("inputs", {}), "fold_hash": data.provenance.get("fold_hash"),
        "conditions": run_conditions(cfg.threads or usable_cores()),
        "tuned": tuned_record(cfg, cfg.model_key(name))})


def print_summary(results: list[RunResult]) -> None:
    """A table of each model's OOF pAUC, fold spread and time."""
    table = Table(title="tabular CV (OOF = pooled over folds; fold = per-fold mean)")
    for col in ("model", "OOF pAUC", "OOF AUC", "fold pAUC mean ± std", "seconds"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r.name, f"{r.pauc:.4f}", f"{r.auc:.4f}",
                      f"{fmt_score(r.fold_pauc_mean)} ± {fmt_score(r.fold_pauc_std)}",
                      f"{r.seconds}")
    Console().print(table)


def run(cfg: TabularConfig) -> list[RunResult]:
    """``isic train-tabular``: every enabled model, written under ``artifacts/``; one result
    per model (run folder), in the configured order."""
    enabled = {n: s for n, s in cfg.models.items() if s.enabled}
    if not enabled:
        raise ValueError("tabular: no model enabled in config key 'models'")
    data = prepare(cfg)
    results = []
    for name, spec in enabled.items():
        log.info("%s (%s): %d folds x %d bags, neg_ratio=%s", name, spec.kind,
                 len(np.unique(data.fold)), cfg.bags, cfg.neg_ratio)
        res = cross_validate(data.X, data.y, data.fold, spec, data.features.names,
                             data.features.categorical, X_test=data.X_test,
                             neg_ratio=cfg.neg_ratio, bags=cfg.bags, seed=cfg.seed,
                             threads=cfg.threads, keep_models=cfg.save_models)
        results.append(write_outputs(cfg, name + cfg.suffix, data, res))
    print_summary(results)
    return results
