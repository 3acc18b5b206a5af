"""The config of ``isic folds`` (``configs/folds.yaml``), kept apart from ``folds.py``
(scikit-learn's splitter) so ``isic folds --help`` loads no scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from isicstack.settings.command import Command


@dataclass
class FoldsConfig:
    """How the train rows are split into folds."""

    COMMAND: ClassVar[Command] = Command(
        "folds", "isicstack.data.folds",
        "write artifacts/folds.parquet (patient-grouped, stratified)")

    data_dir: str = "auto"  # auto: real Kaggle files if present, else datasets/synthetic/<profile>
    artifacts: str = "artifacts"  # output folder of every stage (folds.parquet here)
    profile: str = "default"  # config profile in use (set by --profile)
    n_folds: int = 5  # patient-grouped folds
    seed: int = 42  # seed of the fold shuffle
    force: bool = False  # replace folds made from other data (invalidates OOF files)
