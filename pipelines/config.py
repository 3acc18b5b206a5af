"""The config of ``isic tune`` (``configs/tune.yaml``; the search spaces are
``configs/tune/<stage>.yaml``), kept apart from ``tune.py`` and ``tune_space.py`` (Optuna) so
``isic tune --help`` loads no Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from isicstack.settings.command import Command


@dataclass
class TuneConfig:
    """Config of ``isic tune`` (``configs/tune.yaml``); search spaces: ``tune_space.load_space``."""

    COMMAND: ClassVar[Command] = Command(
        "tune", "isicstack.pipelines.tune",
        "Optuna sweep of a stage for OOF pAUC (`isic tune tabular model=xgb`)")

    stage: str = "tabular"  # tabular | image | stack
    model: str = "lgbm"  # tabular only: the models.<model> swept
    data_dir: str = "auto"  # auto: real Kaggle files if present, else datasets/synthetic/<profile>
    artifacts: str = "artifacts"  # the tuned stage's artifacts folder
    profile: str = "default"  # profile of the tuned stage (set by --profile)
    trials: int = 30  # trials to run; 0 = until timeout
    timeout: int = 0  # seconds; 0 = no limit
    storage: str = ""  # SQLAlchemy URL; empty = $OPTUNA_STORAGE, else sqlite in artifacts
    study_name: str = ""  # empty = <stage>-<model>-<profile>
    seed: int = 0  # TPE sampler seed (< 0: random)
    pruning: bool = True  # median-prune a trial on its per-fold scores
    heartbeat_interval: int = 30  # seconds between heartbeats; 0 = off
    grace_period: int = 90  # seconds without a heartbeat before a trial is retried
    export: bool = True  # write the best trial to configs/tuned/<stage>.yaml
    space_file: str = ""  # search space; empty = configs/tune/<stage>.yaml (tabular: optional)
    tuned_dir: str = ""  # where export writes; empty = ./configs/tuned
    stage_overrides: list[str] = field(default_factory=list)  # key=value overrides of that stage
    keep_trials: bool = False  # image stage: keep each trial's artifacts folder
    enqueue_defaults: bool = True  # a new study's first trial = the current config's values
