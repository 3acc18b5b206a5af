"""The ISIC 2024 data contract: schema, loading, crops, synthetic data, folds, metric."""
