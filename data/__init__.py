"""The ISIC 2024 data contract: schema, loading, crops, folds, the metric, the artifacts layout,
prediction files (``predictions``), provenance and report sections' "nothing here"."""
