"""The tabular stage's config (``configs/tabular.yaml``): the features, the GBDTs and the bags.

Kept apart from ``cv.py`` (LightGBM, XGBoost): evaluation, tuning, prediction and
``isic train-tabular --help`` read it without loading a GBDT library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from isicstack.features.config import FeatureConfig
from isicstack.settings.command import Command


@dataclass
class ModelSpec:
    """One GBDT of the stage: library kind, rounds and library parameters."""

    kind: str = "lgbm"  # lgbm | xgb | cat
    enabled: bool = True  # false: not trained
    num_rounds: int = 200  # boosting rounds
    params: dict[str, Any] = field(default_factory=dict)  # the library's parameters, passed as is


@dataclass
class TabularConfig:
    """Config of ``isic train-tabular`` (``configs/tabular.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "train-tabular", "isicstack.tabular.cv",
        "features + LightGBM/XGBoost/CatBoost CV, OOF and test predictions", yaml="tabular")

    data_dir: str = "auto"  # auto: real Kaggle files if present, else datasets/synthetic/<profile>
    artifacts: str = "artifacts"  # reads folds.parquet; writes runs/, oof/, test/
    profile: str = "default"  # config profile in use (set by --profile)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    models: dict[str, ModelSpec] = field(default_factory=lambda: {
        "lgbm": ModelSpec("lgbm", num_rounds=250, params={
            "learning_rate": 0.04, "num_leaves": 31, "max_depth": 6, "min_data_in_leaf": 20,
            "lambda_l1": 0.1, "lambda_l2": 1.0, "feature_fraction": 0.5,
            "bagging_fraction": 0.8, "bagging_freq": 1, "scale_pos_weight": 2.0}),
        "xgb": ModelSpec("xgb", num_rounds=250, params={
            "eta": 0.04, "max_depth": 5, "lambda": 2.0, "alpha": 0.1, "subsample": 0.8,
            "colsample_bytree": 0.6, "colsample_bynode": 0.8, "min_child_weight": 1.0,
            "scale_pos_weight": 2.0}),
        "cat": ModelSpec("cat", enabled=False, num_rounds=250, params={
            "depth": 6, "learning_rate": 0.06, "l2_leaf_reg": 5.0, "scale_pos_weight": 2.0})})
    neg_ratio: float = 0.0  # negatives kept per positive in each bag (0 = all rows)
    bags: int = 2  # models per fold (own seed and negatives), averaged
    seed: int = 42  # seed of the bags and the libraries
    threads: int = 0  # GBDT threads; 0 = every core
    save_models: bool = True  # keep the fold models (isic predict reads them)
    # outputs are <model><suffix>: a second pass with image-score features (suffix _img) sits
    # beside the first instead of overwriting the scores it was built on
    suffix: str = ""

    def model_key(self, output: str) -> str:
        """The ``models`` key that wrote output ``output`` (the output name minus ``suffix``)."""
        if self.suffix and output.endswith(self.suffix):
            return output[: -len(self.suffix)]
        return output
