"""Calibration maps: fitting them (``fit``), applying them (``maps``), the scores they are fitted
on (``scores``) and the operating point at a target sensitivity (``operating_point``); the
config of the operating point in ``config``."""
