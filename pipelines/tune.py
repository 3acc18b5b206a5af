"""``isic tune``: Optuna studies that maximise cross-validated OOF pAUC of a stage.

Objectives are pure functions of a trial that call the stage's own CV code (no copy of the
training loop). Storage is ``sqlite:///<artifacts>/optuna.db`` by default, or any SQLAlchemy URL
(``storage=`` or ``OPTUNA_STORAGE``) so several workers on several machines share one study
(``load_if_exists``). Heartbeats mark the trial of a killed worker failed and re-queue it, so it
never blocks the study. The best parameters go to ``configs/tuned/<stage>.yaml``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml

from isicstack.data.folds import read_folds
from isicstack.data.io import write_text
from isicstack.data.metric import pauc
from isicstack.data.provenance import fold_hash
from isicstack.extras import require
from isicstack.pipelines import tune_stages
from isicstack.pipelines.config import TuneConfig
from isicstack.pipelines.tune_log import trial_callbacks
from isicstack.pipelines.tune_space import (
    load_space,
    pruning_reporter,
    space_section,
    split_params,
    stage_config,
    suggest,
)
from isicstack.settings.layers import TUNED_BY, tuned_dir
from isicstack.tabular.config import TabularConfig
from isicstack.tabular.cv import cross_validate, prepare

log = logging.getLogger(__name__)


def storage_url(cfg: TuneConfig) -> str:
    """``storage`` key, else ``OPTUNA_STORAGE``, else SQLite under the artifacts folder."""
    if cfg.storage:
        return cfg.storage
    if os.environ.get("OPTUNA_STORAGE"):
        return os.environ["OPTUNA_STORAGE"]
    Path(cfg.artifacts).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(cfg.artifacts).resolve() / 'optuna.db'}"


def make_storage(cfg: TuneConfig) -> optuna.storages.BaseStorage:
    """RDB storage with heartbeats; a trial whose worker died is failed and retried once."""
    url = storage_url(cfg)
    kwargs: dict[str, Any] = {}
    if cfg.heartbeat_interval > 0:
        kwargs = {"heartbeat_interval": cfg.heartbeat_interval,
                  "grace_period": cfg.grace_period,
                  "failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if url.startswith("postgresql"):
        require("psycopg2", needed_by="a PostgreSQL Optuna storage",  # not a driver trace
                instead="use the default SQLite storage (unset OPTUNA_STORAGE)")
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
        except Exception as err:  # two workers creating a fresh schema at once: one loses
            text = type(err).__name__ + repr(err)
            if not ("IntegrityError" in text or "already exists" in text) or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def tabular_objective(cfg: TuneConfig) -> tuple[Callable[[optuna.Trial], float], dict]:
    """Features are built once; each trial reruns only the GBDT CV of ``cfg.model``."""

    tab = stage_config(cfg, TabularConfig, "tabular")
    if cfg.model not in tab.models:
        raise ValueError(f"tabular config has no model {cfg.model!r}; has {list(tab.models)}")
    space = load_space(cfg)  # before the feature build: a bad space file fails at once
    data = prepare(tab)
    base = tab.models[cfg.model]

    def objective(trial: optuna.Trial) -> float:
        stage, params = split_params(suggest(trial, space))
        spec = type(base)(kind=base.kind, enabled=True,
                          num_rounds=int(stage.get("num_rounds", base.num_rounds)),
                          params={**base.params, **params})
        res = cross_validate(data.X, data.y, data.fold, spec, data.features.names,
                             data.features.categorical, neg_ratio=stage.get(
                                 "neg_ratio", tab.neg_ratio), bags=tab.bags, seed=tab.seed,
                             threads=tab.threads, on_fold=pruning_reporter(trial, cfg.pruning))
        return pauc(data.y, res.oof)

    def export(best: dict[str, Any]) -> dict:
        stage, params = split_params(best)
        entry: dict[str, Any] = {"params": {**base.params, **params}}
        if "num_rounds" in stage:
            entry["num_rounds"] = stage["num_rounds"]
        out: dict[str, Any] = {"models": {cfg.model: entry}}
        if "neg_ratio" in stage:
            out["neg_ratio"] = stage["neg_ratio"]
        return out

    defaults = {k: v for k, v in base.params.items() if k in space}
    if "stage.num_rounds" in space:
        defaults["stage.num_rounds"] = base.num_rounds
    if "stage.neg_ratio" in space:
        defaults["stage.neg_ratio"] = tab.neg_ratio
    return objective, {"export": export, "defaults": defaults}


def _objective(stage: str) -> Callable[[TuneConfig], tuple[Callable, dict]]:
    """The objective factory of ``stage``; image/stack ones import torch, so only on demand."""
    if stage == "tabular":
        return tabular_objective

    return getattr(tune_stages, f"{stage}_objective")


# the YAML stem each tunable stage reads, so exported parameters land where the stage looks
TUNED_STEM = {"tabular": "tabular", "image": "image", "stack": "stacking"}
OBJECTIVES = tuple(TUNED_STEM)


def study_for(cfg: TuneConfig) -> optuna.Study:
    """Create or join the study (``load_if_exists``), seeded TPE + median pruning."""
    name = cfg.study_name or f"{cfg.stage}-{space_section(cfg)}-{cfg.profile}"
    return optuna.create_study(
        study_name=name, storage=make_storage(cfg), direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=None if cfg.seed < 0 else cfg.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))


def export_best(cfg: TuneConfig, study: optuna.Study, export: Callable[[dict], dict]) -> Path:
    """Write the best trial's parameters to ``configs/tuned/<stage>.yaml``."""
    best = study.best_trial
    body = export(best.params)
    header = (f"# tuned by `isic tune` on study {study.study_name!r}: trial {best.number}, "
              f"OOF pAUC {best.value:.5f}, profile {cfg.profile!r}, data {cfg.data_dir!r}\n")
    path = Path(cfg.tuned_dir or tuned_dir()) / f"{TUNED_STEM[cfg.stage]}.yaml"
    finished = sum(t.state.is_finished() for t in study.trials)
    # what a stage run records when it merges this file (config.tuned_record): the report
    # flags a CV measured on the folds the sweep chose its trial on as optimistic
    body[TUNED_BY] = {"study": study.study_name, "trial": best.number, "value": best.value,
                      "finished_trials": finished, "profile": cfg.profile,
                      "fold_hash": tuned_fold_hash(cfg.artifacts)}
    write_text(header + yaml.safe_dump(body, sort_keys=False), path)
    return path


def tuned_fold_hash(artifacts: str) -> str | None:
    """The fold hash of the folds a sweep scored its trials on (None without a folds file)."""

    try:
        return fold_hash(read_folds(artifacts))
    except (FileNotFoundError, OSError):
        return None


def run(cfg: TuneConfig) -> optuna.Study:
    """``isic tune``: run ``trials`` more trials (or until ``timeout``) on the shared study."""
    if cfg.stage not in OBJECTIVES:
        raise ValueError(f"tune: unknown stage {cfg.stage!r}; known: {', '.join(OBJECTIVES)}")
    objective, extra = _objective(cfg.stage)(cfg)
    study = study_for(cfg)
    log.info("study %r on %s: %d finished trials so far", study.study_name,
             storage_url(cfg).split("@")[-1], sum(t.state.is_finished() for t in study.trials))
    if cfg.enqueue_defaults and extra.get("defaults") and not study.trials:
        # the untuned configuration is trial 0: the sweep's gain over it is measured, not assumed
        study.enqueue_trial(extra["defaults"], skip_if_exists=True)
        log.info("trial 0 = the current configuration %s", extra["defaults"])
    study.optimize(objective, n_trials=cfg.trials or None, timeout=cfg.timeout or None,
                   catch=(), gc_after_trial=True, callbacks=trial_callbacks(cfg))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        log.info("best trial %d: OOF pAUC %.5f %s", study.best_trial.number, study.best_value,
                 study.best_params)
        if cfg.export:
            path = export_best(cfg, study, extra.get("export", dict))  # default: flat keys
            log.info("best parameters written to %s", path)
    return study
