"""One fit/predict/save/load interface over LightGBM, XGBoost and CatBoost.

The CV loop, the tuner and offline inference all talk to this interface, so adding a GBDT is one
class here, registered with :func:`register_model`, and never a copy of the loop: the class
carries its ``kind`` (``models.<name>.kind``), its file ``suffix`` (:func:`load_model` picks the
library by it) and its ``space`` (``isic tune tabular model=<kind>``). Models are saved in
their native formats (LightGBM text, XGBoost UBJSON, CatBoost cbm): no pickle, so a saved model
survives a library upgrade and can be inspected.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import lightgbm as lgb
import numpy as np
import xgboost as xgb

from isicstack.data.io import atomic_path
from isicstack.extras import require


class GBDT(ABC):
    """A gradient-boosted tree model over a float32 matrix with categorical columns as codes."""

    kind: ClassVar[str]
    suffix: ClassVar[str]
    # search space of `isic tune tabular`: key -> {type: float|int|categorical, low, high, log,
    # choices}; keys are library parameters, `stage.<key>` set stage options (num_rounds,
    # neg_ratio). A section of a user's tune/tabular.yaml replaces it (pipelines/tune_space.py)
    space: ClassVar[dict[str, dict[str, Any]]]

    def __init__(self, params: dict[str, Any], num_rounds: int, threads: int = 0) -> None:
        self.params = dict(params)
        self.num_rounds = num_rounds
        self.threads = threads
        self.model: Any = None

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray, names: list[str], categorical: list[str],
            seed: int, prepared: Any = None) -> GBDT:
        """Train on ``X`` (rows x names); ``categorical`` names hold integer codes or NaN.
        ``prepared``: this model kind's :meth:`prepare` of the same rows, reused."""

    def prepare(self, X: np.ndarray, y: np.ndarray, names: list[str],
                categorical: list[str]) -> Any:
        """The library's own training set of ``X``: the bags of a fold that train on the same
        rows build it (binning, quantile sketch) once; the fitted models are identical."""
        return None

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class for each row."""

    @abstractmethod
    def _save(self, path: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> GBDT:
        """Read a model written by :meth:`save`."""

    def save(self, path: str | Path) -> Path:
        """Write the model in its native format, atomically."""
        path = Path(path).with_suffix(self.suffix)
        with atomic_path(path) as tmp:
            self._save(tmp)
        return path

    def importance(self, names: list[str]) -> dict[str, float]:
        """Gain importance per feature name (0 for unused features)."""
        return {}


# kind -> class, filled by @register_model: make_model, load_model, the predictor and the tuner
MODEL_KINDS: dict[str, type[GBDT]] = {}
Model = TypeVar("Model", bound=type[GBDT])


def register_model(cls: Model) -> Model:
    """Class decorator: make ``cls`` a model kind. Its ``kind`` and ``suffix`` must be new (a
    saved model is loaded by its suffix) and its ``space`` a mapping of parameter specs."""
    missing = [a for a in ("kind", "suffix", "space") if not getattr(cls, a, None)]
    if missing:
        raise TypeError(f"{cls.__name__}: a registered GBDT needs class attribute(s) {missing}")
    if not all(isinstance(spec, dict) for spec in cls.space.values()):
        raise TypeError(f"{cls.__name__}.space: each key needs a mapping "
                        "{type, low, high, log | choices}")
    for other in MODEL_KINDS.values():
        if other is not cls and (cls.kind == other.kind or cls.suffix == other.suffix):
            raise ValueError(f"{cls.__name__}: kind {cls.kind!r} / suffix {cls.suffix!r} "
                             f"already taken by {other.__name__} ({other.kind}, {other.suffix})")
    MODEL_KINDS[cls.kind] = cls
    return cls


@register_model
class LGBMModel(GBDT):
    kind = "lgbm"
    suffix = ".txt"
    space = {  # ranges the top ISIC 2024 teams used
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
        "num_leaves": {"type": "int", "low": 8, "high": 128, "log": True},
        "max_depth": {"type": "int", "low": 3, "high": 8},
        "min_data_in_leaf": {"type": "int", "low": 5, "high": 100, "log": True},
        "lambda_l1": {"type": "float", "low": 0.001, "high": 10.0, "log": True},
        "lambda_l2": {"type": "float", "low": 0.001, "high": 10.0, "log": True},
        "feature_fraction": {"type": "float", "low": 0.3, "high": 1.0},
        "bagging_fraction": {"type": "float", "low": 0.4, "high": 1.0},
        "bagging_freq": {"type": "int", "low": 1, "high": 7},
        "scale_pos_weight": {"type": "float", "low": 0.8, "high": 4.0},
        "stage.num_rounds": {"type": "int", "low": 100, "high": 500, "log": True},
    }

    def prepare(self, X, y, names, categorical):
        if len(X) > self.params.get("bin_construct_sample_cnt", 200_000):
            return None  # bins from a seeded sample of rows: each bag draws its own
        # kept after the first fit's binning, so the next bag trains on the same bins
        return lgb.Dataset(X, y, feature_name=names, categorical_feature=categorical,
                           free_raw_data=False)

    def fit(self, X, y, names, categorical, seed, prepared=None):
        params = {"objective": "binary", "verbosity": -1, "deterministic": True,
                  "force_row_wise": True, "num_threads": self.threads, "seed": seed,
                  **self.params}
        data = prepared if prepared is not None else lgb.Dataset(
            X, y, feature_name=names, categorical_feature=categorical, free_raw_data=True)
        self.model = lgb.train(params, data, num_boost_round=self.num_rounds)
        return self

    def predict(self, X):
        return self.model.predict(X)

    def _save(self, path):
        self.model.save_model(str(path))

    @classmethod
    def load(cls, path):
        obj = cls({}, 0)
        obj.model = lgb.Booster(model_file=str(path))
        return obj

    def importance(self, names):
        gains = self.model.feature_importance(importance_type="gain")
        return dict(zip(self.model.feature_name(), map(float, gains), strict=True))


@register_model
class XGBModel(GBDT):
    kind = "xgb"
    suffix = ".ubj"
    space = {
        "eta": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
        "max_depth": {"type": "int", "low": 3, "high": 8},
        "lambda": {"type": "float", "low": 0.001, "high": 10.0, "log": True},
        "alpha": {"type": "float", "low": 0.001, "high": 10.0, "log": True},
        "subsample": {"type": "float", "low": 0.4, "high": 1.0},
        "colsample_bytree": {"type": "float", "low": 0.3, "high": 1.0},
        "colsample_bynode": {"type": "float", "low": 0.4, "high": 1.0},
        "min_child_weight": {"type": "float", "low": 0.5, "high": 20.0, "log": True},
        "scale_pos_weight": {"type": "float", "low": 0.8, "high": 4.0},
        "stage.num_rounds": {"type": "int", "low": 100, "high": 500, "log": True},
    }

    def _matrix(self, X, y=None):
        return xgb.DMatrix(X, label=y, feature_names=self.model_names, missing=np.nan,
                           feature_types=self.model_types, enable_categorical=True,
                           nthread=self.threads or -1)

    def _describe(self, names, categorical):
        cats = set(categorical)
        self.model_names = list(names)
        self.model_types = ["c" if n in cats else "q" for n in names]

    def prepare(self, X, y, names, categorical):
        self._describe(names, categorical)
        return self._matrix(X, y)  # its histogram cuts are cached by the first fit

    def fit(self, X, y, names, categorical, seed, prepared=None):
        params = {"objective": "binary:logistic", "tree_method": "hist", "verbosity": 0,
                  "seed": seed, "nthread": self.threads or -1, "max_cat_to_onehot": 1,
                  **self.params}
        self._describe(names, categorical)
        data = prepared if prepared is not None else self._matrix(X, y)
        self.model = xgb.train(params, data, num_boost_round=self.num_rounds)
        return self

    def predict(self, X):
        return self.model.predict(self._matrix(X))

    def _save(self, path):
        self.model.save_model(str(path))

    @classmethod
    def load(cls, path):
        obj = cls({}, 0)
        obj.model = xgb.Booster(model_file=str(path))
        obj.model_names = obj.model.feature_names
        obj.model_types = obj.model.feature_types
        return obj

    def importance(self, names):
        score = self.model.get_score(importance_type="total_gain")
        return {n: float(score.get(n, 0.0)) for n in names}


# CatBoost and the pandas frame it is fed are the optional extra `catboost`
CAT_NEEDED_BY, CAT_INSTEAD = "the CatBoost model (models.cat)", "set models.cat.enabled=false"


def _catboost() -> ModuleType:
    """CatBoost, loaded when a cat model is fitted or read (the core install has none)."""
    return require("catboost", needed_by=CAT_NEEDED_BY, instead=CAT_INSTEAD)


@register_model
class CatModel(GBDT):
    kind = "cat"
    suffix = ".cbm"
    space = {
        "depth": {"type": "int", "low": 4, "high": 8},
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
        "l2_leaf_reg": {"type": "float", "low": 1.0, "high": 10.0, "log": True},
        "scale_pos_weight": {"type": "float", "low": 0.8, "high": 4.0},
        "stage.num_rounds": {"type": "int", "low": 100, "high": 400, "log": True},
    }

    @staticmethod
    def _frame(X, names, categorical):
        pd = require("pandas", needed_by=CAT_NEEDED_BY, instead=CAT_INSTEAD)
        df = pd.DataFrame(X, columns=names)
        for c in categorical:
            df[c] = np.nan_to_num(df[c].to_numpy(), nan=-1).astype(np.int64)
        return df

    def fit(self, X, y, names, categorical, seed, prepared=None):
        CatBoostClassifier = _catboost().CatBoostClassifier
        params = {"loss_function": "Logloss", "verbose": False, "allow_writing_files": False,
                  "thread_count": self.threads or -1, "random_seed": seed,
                  "iterations": self.num_rounds, **self.params}
        self.model = CatBoostClassifier(**params)
        self.model.fit(self._frame(X, names, categorical), y, cat_features=list(categorical))
        return self

    def predict(self, X):
        names = list(self.model.feature_names_)
        cats = [names[i] for i in self.model.get_cat_feature_indices()]
        return self.model.predict_proba(self._frame(X, names, cats))[:, 1]

    def _save(self, path):
        self.model.save_model(str(path), format="cbm")

    @classmethod
    def load(cls, path):
        CatBoostClassifier = _catboost().CatBoostClassifier
        obj = cls({}, 0)
        obj.model = CatBoostClassifier()
        obj.model.load_model(str(path), format="cbm")
        return obj

    def importance(self, names):
        return dict(zip(self.model.feature_names_,
                        map(float, self.model.get_feature_importance()), strict=True))


def make_model(kind: str, params: dict[str, Any], num_rounds: int, threads: int = 0) -> GBDT:
    """Instantiate the registered GBDT of ``kind`` (lgbm, xgb, cat, ...)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind](params, num_rounds, threads)


def load_model(path: str | Path) -> GBDT:
    """Load a saved model, choosing the library by file suffix."""
    path = Path(path)
    for cls in MODEL_KINDS.values():
        if path.suffix == cls.suffix:
            return cls.load(path)
    raise ValueError(f"{path}: unknown model file type {path.suffix!r}")
