"""The evaluation room: every command that judges saved runs, and the measures they share.

Commands (each a ``run``; their config dataclasses, each declaring its ``COMMAND``, and the
report sections' in ``config``, the room's bottom layer, which loads no model library):
``report`` (``isic report``: CV table, curves, clinical sections, Grad-CAM grid), ``evaluate``
(``isic evaluate``: repeated CV over fold seeds; ``isic compare``: paired test of two sets of
runs), ``calibrate``, ``subgroups``, ``loco`` (leave one centre out) and ``runs_table``
(``isic runs``: the tracked runs as one table); ``clinical`` gathers the report's clinical
sections (calibration, subgroups, per-centre CV).

Measures, below the commands (a second import contract in ``pyproject.toml``): small pure
functions on arrays and polars frames: ``paired`` (intervals and paired tests over patients and
folds), ``drift``, ``oracle``, ``calibration_metrics``, ``calibration_report``,
``subgroup_tables`` and ``compared_runs`` (reading saved runs to compare). Fitting and applying
calibration maps, and the operating point, live in the ``calibration`` room.
"""
