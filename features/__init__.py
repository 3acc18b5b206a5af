"""Tabular features for the GBDT: groups selected by name, built per split with polars."""

from isicstack.features.build import GROUPS, FeatureConfig, FeatureSet, build_features

__all__ = ["GROUPS", "FeatureConfig", "FeatureSet", "build_features"]
