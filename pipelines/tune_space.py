"""What every tuning objective shares: the search space (read, drawn), the per-fold pruning
report and the tuned stage's own config (``isic tune``'s own config: ``pipelines/config.py``).

Apart from ``tune.py`` (studies, storage, export, the tabular objective) so the image and stack
objectives (``tune_stages.py``, which import torch) import these without importing ``tune``:
the two modules used to import each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import optuna

from isicstack.pipelines.config import TuneConfig
from isicstack.settings.layers import find_config, load_config, read_yaml
from isicstack.tabular.models import MODEL_KINDS


def space_section(cfg: TuneConfig) -> str:
    """The tabular spaces are per GBDT (``model``); the other stages have one, ``default``."""
    return cfg.model if cfg.stage == "tabular" else "default"


def load_space(cfg: TuneConfig) -> dict[str, dict[str, Any]]:
    """Search space of ``cfg``: ``configs/tune/<stage>.yaml`` (``space_file`` when given). A
    tabular GBDT's space is registered on its class (``tabular/models.py``), so a new library
    needs no file; a ``tune/tabular.yaml`` of the user's (``space_file``, ``$ISIC_CONFIG_DIR``
    or ``./configs``) replaces the spaces of the kinds it names."""
    path = Path(cfg.space_file) if cfg.space_file else find_config(f"tune/{cfg.stage}.yaml")
    if cfg.space_file and not path.is_file():
        raise FileNotFoundError(f"{path}: no search space file for stage {cfg.stage!r}")
    if cfg.stage == "tabular":
        return _tabular_space(path, cfg.model)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"configs/tune/{cfg.stage}.yaml: no search space file for stage "
                                f"{cfg.stage!r}")
    doc = read_yaml(path, "a mapping of search spaces by section")
    section = space_section(cfg)
    if section not in doc:
        raise ValueError(f"{path}: no search space {section!r}; has {list(doc)}")
    return doc[section]


def _tabular_space(path: Traversable | None, model: str) -> dict[str, dict[str, Any]]:
    """``model``'s section of the user's file ``path`` (None: none), else its registered space;
    a section naming no registered kind is refused (a typo must not tune the default space)."""
    known = ", ".join(MODEL_KINDS)
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {model!r}; known: {known}")
    doc = read_yaml(path, "a mapping of search spaces by model kind") if path else {}
    unknown = sorted(set(doc) - set(MODEL_KINDS))
    if unknown:
        raise ValueError(f"{path}: search spaces {unknown} name no model kind; known: {known}")
    if model in doc:
        return doc[model]
    return {key: dict(spec) for key, spec in MODEL_KINDS[model].space.items()}


def suggest(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Draw one value per key: ``{type: float|int|categorical, low, high, log, choices}``."""
    out: dict[str, Any] = {}
    for key, spec in space.items():
        kind = spec.get("type", "float")
        if kind == "float":
            out[key] = trial.suggest_float(key, spec["low"], spec["high"],
                                           log=spec.get("log", False))
        elif kind == "int":
            out[key] = trial.suggest_int(key, spec["low"], spec["high"],
                                         log=spec.get("log", False))
        elif kind == "categorical":
            out[key] = trial.suggest_categorical(key, spec["choices"])
        else:
            raise ValueError(f"search space key {key!r}: unknown type {kind!r}")
    return out


def split_params(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stage-level keys (``stage.<key>``, e.g. ``stage.num_rounds``) vs library params."""
    stage = {k[6:]: v for k, v in values.items() if k.startswith("stage.")}
    params = {k: v for k, v in values.items() if not k.startswith("stage.")}
    return stage, params


def pruning_reporter(trial: optuna.Trial,
                     enabled: bool) -> Callable[[int, float | None], None]:
    """Per-fold callback: report the running mean fold pAUC and prune a hopeless trial.

    A fold without both classes (score ``None``, see ``metric.fold_scores``) is not reported.
    """
    scores: list[float] = []

    def on_fold(fold: int, score: float | None) -> None:
        if score is not None and not math.isnan(score):
            scores.append(score)
        if scores:
            trial.report(sum(scores) / len(scores), step=fold)
        if enabled and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {fold}")

    return on_fold


def stage_config(cfg: TuneConfig, cls: type, stem: str) -> Any:
    """The tuned stage's own config (profile + ``stage_overrides``) on the study's data."""
    return load_config(cls, stem, cfg.profile, [f"data_dir={cfg.data_dir}",
                                                f"artifacts={cfg.artifacts}",
                                                *cfg.stage_overrides])
