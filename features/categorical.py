"""Categorical columns as Int32 codes, with the level -> code mapping fitted on train only.

GBDTs take integer codes natively (LightGBM ``categorical_feature``, CatBoost ``cat_features``,
XGBoost ``enable_categorical`` after a cast). Fitting on train alone keeps test-only levels
(a new hospital in ``attribution``) out of the model: they, and missing values, become null,
which every GBDT routes as missing instead of as a meaningless code.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from isicstack.data.schema import CATEGORICAL_FEATURES

COMBINED_SITE = "combined_anatomical_site"
CATEGORICAL_OUTPUTS: tuple[str, ...] = (*CATEGORICAL_FEATURES, COMBINED_SITE)


def _source(name: str) -> pl.Expr:
    """The string column behind categorical ``name`` (the site x location cross is built)."""
    if name == COMBINED_SITE:
        return pl.concat_str(pl.col("anatom_site_general"), pl.lit("_"), pl.col("tbp_lv_location"))
    return pl.col(name).cast(pl.String)


def fit_categories(train: pl.DataFrame, names: Sequence[str] = CATEGORICAL_OUTPUTS
                   ) -> dict[str, list[str]]:
    """Sorted non-null levels seen in train for each categorical; code = index in the list.

    Sorting makes codes independent of row order, so the same train set gives the same codes.
    """
    levels = train.select(_source(n).alias(n) for n in names)
    return {
        n: sorted(levels.get_column(n).drop_nulls().unique().to_list()) for n in names
    }


def encode_exprs(categories: dict[str, list[str]]) -> list[pl.Expr]:
    """Int32 code of every categorical; unseen levels and missing values give null."""
    return [
        _source(n)
        .replace_strict(levels, list(range(len(levels))), default=None, return_dtype=pl.Int32)
        .alias(n)
        for n, levels in categories.items()
    ]
