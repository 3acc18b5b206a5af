"""Tabular features for the GBDT: groups selected by name, built per split with polars.

``config`` (``FeatureConfig``, the group names; light: a stage's config imports it) and
``build`` (the ``GROUPS`` registry, ``build_features``).
"""
