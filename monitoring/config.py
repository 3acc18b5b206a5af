"""The configs of ``isic monitor`` and of the prediction log's upkeep (``isic forget-patient``,
``isic prune-log``), in one light module: ``--help`` reads them without scipy or matplotlib.

The log's upkeep commands live here rather than in ``serving/config.py`` because the CLI
collects commands from each room's ``config.py`` and the serving room's is another change's;
they act through :mod:`isicstack.serving.predlog`, the one implementation of the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from isicstack.settings.command import Command

DEFAULT_LOG = "artifacts/serve/predictions.db"  # where `isic serve` writes its log
DEFAULT_BUNDLE = "dist/bundle"  # where `isic bundle` writes (what `isic serve` serves)


@dataclass
class MonitorConfig:
    """Config of ``isic monitor``: which log, against which bundle's reference, how to cut
    windows, and when a finding is an alert (exit status 3)."""

    COMMAND: ClassVar[Command] = Command(
        "monitor", "isicstack.monitoring.run",
        "drift, review rate and outcomes of the prediction log per window vs the bundle",
        yaml="monitor")

    log: str = DEFAULT_LOG  # the prediction log (SQLite) `isic serve` writes
    bundle: str = DEFAULT_BUNDLE  # bundle folder or models:/isicstack@champion (its reference.json)
    window: str = "1000"  # lesions per window (1000) or a duration (7d, 12h, 30m)
    min_lesions: int = 200  # a last, partial window with fewer lesions is left out (said so)
    out: str = ""  # "" = <artifacts>/monitor
    artifacts: str = "artifacts"  # where the run ledger is (ISIC_TRACKING)
    profile: str = "default"  # config profile in use (set by --profile)
    alpha: float = 0.05  # family-wise error rate per window (Holm over all its tests)
    psi_floor: float = 0.1  # a drift alert also needs PSI at least this (effect-size floor)
    # ... and at least this many times the PSI a clean window shows by chance at its effective
    # size ((bins - 1) / (lesions / design effect)); 0 = the fixed floor alone
    psi_noise: float = 3.0
    missing_floor: float = 0.05  # ... a missing-rate change of at least this (absolute)
    range_floor: float = 0.01  # ... at least this share of values outside the reference range
    unseen_floor: float = 0.01  # share of a window's lesions in an unseen category: an alert
    review_floor: float = 0.25  # review rate off the expected by at least this share of it
    calibration_floor: float = 1.5  # observed/expected positives beyond this factor (either way)
    min_sensitivity: float = 0.5  # alert when the corrected interval lies wholly below this
    min_specificity: float = 0.0  # likewise (0 = off)
    min_auc: float = 0.0  # likewise for the corrected AUC (0 = off)
    cluster: bool = True  # deflate each test's sample size by its within-patient correlation
    n_boot: int = 200  # patient-bootstrap replicates of the outcome figures
    ci: float = 0.95  # interval level
    seed: int = 0  # of the bootstrap
    fail_on_alert: bool = True  # exit status 3 when any window has an alert
    dpi: int = 110  # PNG resolution


@dataclass
class ForgetPatientConfig:
    """Config of ``isic forget-patient``: delete one patient's rows from the prediction log."""

    COMMAND: ClassVar[Command] = Command(
        "forget-patient", "isicstack.monitoring.logcmd",
        "delete one patient's predictions and outcomes from the prediction log", yaml="log")

    patient_id: str = ""  # the patient's id as sent to the service (hashed with ISIC_LOG_KEY)
    log: str = DEFAULT_LOG  # the prediction log (SQLite)


@dataclass
class PruneLogConfig:
    """Config of ``isic prune-log``: delete predictions older than the retention period."""

    COMMAND: ClassVar[Command] = Command(
        "prune-log", "isicstack.monitoring.logcmd",
        "delete prediction-log rows older than the retention period (and their outcomes)",
        yaml="log")

    log: str = DEFAULT_LOG  # the prediction log (SQLite)
    retention_days: float = 365.0  # rows older than this many days are deleted
