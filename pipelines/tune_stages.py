"""Optuna objectives of the image and stacking stages (the tabular one lives in ``tune.py``;
what they share in ``tune_space.py``).

Both reuse their stage's own code: the image objective calls ``vision.train.run`` on a private
artifacts folder per trial (the shared folds and tabular scores copied in, nothing written
where ``make stack`` would pick it up), and prunes on the running mean of the fold pAUCs through
a Lightning callback; the stacking objective calls ``stacking.methods.cross_validate`` on the
level-1 OOF matrix read once per study.

Search-space keys are the stage's config keys, dotted for a nested one (``optim.lr``); an
image space written with the flat keys of before the groups (``lr``) is read as the new ones,
and so is a best trial of a study that drew them (:mod:`isicstack.settings.keys`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from pytorch_lightning import Callback

from isicstack.data.metric import pauc
from isicstack.ledger.store import suspended
from isicstack.pipelines.tune_space import load_space, pruning_reporter, stage_config, suggest
from isicstack.settings.keys import field_paths, lookup, moved_keys, nest, rename_moved, with_keys
from isicstack.stacking.config import StackConfig
from isicstack.stacking.methods import cross_validate
from isicstack.stacking.stack import load_level1
from isicstack.vision.config import ImageConfig
from isicstack.vision.train import run


class FoldPruning(Callback):
    """Reports the running mean of per-fold OOF pAUC after each fold; prunes bad trials.

    The image stage calls ``on_fold_end`` once a fold's held-out rows are scored (the final
    weights, as in the OOF file), so the reports are comparable with the tabular objective's.
    """

    def __init__(self, on_fold: Callable[[int, float | None], None]) -> None:
        self.on_fold, self.fold = on_fold, 0

    def on_fold_end(self, fold: int, metrics: dict[str, Any]) -> None:
        index, self.fold = self.fold, self.fold + 1
        self.on_fold(index, metrics.get("pauc"))


def _trial_artifacts(src: Path, dst: Path, names: list[str]) -> Path:
    """A fresh artifacts folder holding the shared folds and the named level-1 predictions."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for rel in ("folds.parquet", "folds.json", "folds_images.parquet", "folds_images.json",
                *(f"{d}/{n}.parquet" for n in names for d in ("oof", "test"))):
        if (src / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)
    return dst


def _check_keys(space: dict[str, Any], cls: type) -> None:
    """Search-space keys are (dotted) config keys of the stage: a typo must not be silently
    ignored."""
    unknown = sorted(set(space) - set(field_paths(cls)))
    if unknown:
        raise ValueError(f"search space keys {unknown} are not {cls.__name__} keys")


def image_objective(cfg: Any) -> tuple[Callable[[optuna.Trial], float], dict]:
    """Each trial trains every fold of the image stage with the drawn settings (no test pass)."""
    base = stage_config(cfg, ImageConfig, "image")
    moved = moved_keys(ImageConfig)
    space = rename_moved(load_space(cfg), moved,
                         f"search space {cfg.space_file or 'configs/tune/image.yaml'}")
    _check_keys(space, ImageConfig)
    root = Path(cfg.artifacts) / "tune" / "image"

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, space)
        art = _trial_artifacts(Path(base.artifacts), root / f"trial{trial.number}",
                               [base.tabular_name] if base.fusion else [])
        trial_cfg = with_keys(base, {**values, "artifacts": str(art), "name": "tune",
                                     "resume": False, "predict_test": False})
        pruner = FoldPruning(pruning_reporter(trial, cfg.pruning))
        try:
            with suspended():  # the trial is logged by tune's callback, not its private run
                [result] = run(trial_cfg, callbacks=[pruner])
        finally:
            if not cfg.keep_trials:
                shutil.rmtree(art, ignore_errors=True)
        score = result.pauc
        return float("nan") if score is None else float(score)

    def export(best: dict[str, Any]) -> dict[str, Any]:
        """Nested, as configs/image.yaml (a study's older trials may have drawn flat keys)."""
        return nest(rename_moved(best, moved, "best trial's parameters"))

    return objective, {"defaults": {k: lookup(base, k) for k in space}, "export": export}


def stack_objective(cfg: Any) -> tuple[Callable[[optuna.Trial], float], dict]:
    """Each trial cross-validates one level-2 setting on the OOF matrix (read once)."""
    base = stage_config(cfg, StackConfig, "stacking")
    space = load_space(cfg)
    _check_keys(space, StackConfig)
    if "method" not in space and base.method == "auto":
        raise ValueError("stack search space: give 'method' choices, or a fixed method "
                         "in configs/stacking.yaml")
    data = load_level1(base)

    def objective(trial: optuna.Trial) -> float:
        values = {"method": base.method, "n_quantiles": base.n_quantiles,
                  "logistic_c": base.logistic_c, **suggest(trial, space)}
        res = cross_validate(values["method"], data.X, data.y, data.fold, data.inputs,
                             values["n_quantiles"], values["logistic_c"])
        return pauc(data.y, res.scaled)  # pooled on one scale across folds

    defaults = {k: lookup(base, k) for k in space}
    if defaults.get("method") == "auto":
        defaults.pop("method")
    return objective, {"defaults": defaults}
