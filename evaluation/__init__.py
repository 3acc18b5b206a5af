"""Evaluation beyond the ranking metric: operating points, drift checks, oracle correlations.

Small pure functions on arrays and polars frames; ``pipelines/report.py`` calls them and puts
their results into ``report.md`` and ``report.json``. ``calibration_maps`` reads the saved maps
of ``isic calibrate`` for the predict path, the Kaggle package and the app.
"""
