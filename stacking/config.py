"""The stacking stage's config (``configs/stacking.yaml``) and the level-2 methods it may name.

Kept apart from ``stack.py`` and ``methods.py`` (scikit-learn): tuning and ``isic stack --help``
read it without them. ``methods.py`` implements one method per name of ``METHODS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from isicstack.settings.command import Command

METHODS: tuple[str, ...] = ("rank_mean", "rank_weighted", "rank_greedy", "logistic")


@dataclass
class StackConfig:
    """Config of ``isic stack`` (``configs/stacking.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "stack", "isicstack.stacking.stack",
        "level-2 model over OOF predictions and submission.csv", yaml="stacking")

    data_dir: str = "auto"  # its test-metadata.csv, when present, is scored into submission.csv
    artifacts: str = "artifacts"  # reads oof/ and test/; writes runs/stack/, submission.csv
    profile: str = "default"  # config profile in use (set by --profile)
    inputs: list[str] = field(default_factory=list)  # empty: every artifacts/oof/*.parquet
    method: str = "auto"  # auto | rank_mean | rank_weighted | rank_greedy | logistic
    candidates: list[str] = field(default_factory=lambda: list(METHODS))  # auto chooses among these
    n_quantiles: int = 1001  # CDF knots stored per input (rank methods)
    logistic_c: float = 1.0  # inverse L2 strength of the logistic stacker
    submission: bool = True  # write submission.csv when the data dir has test-metadata.csv
