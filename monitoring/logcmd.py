"""``isic forget-patient`` and ``isic prune-log``: the prediction log's upkeep, through
:class:`isicstack.serving.predlog.PredictionLog` (the one implementation of the log).

Both need the key the log was written with: ``ISIC_LOG_KEY``, or the development key file
``<log>.key`` beside an unkeyed log; a log is never created here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from isicstack.monitoring.config import ForgetPatientConfig, PruneLogConfig
from isicstack.serving.predlog import PredictionLog, key_from_env
from isicstack.settings.layers import ConfigError

log = logging.getLogger(__name__)


def open_log(path: str, retention_days: float = 365.0) -> PredictionLog:
    """The existing log at ``path`` with its key (env, else its development key file)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prediction log {p} not found (log=)")
    key = key_from_env()
    return PredictionLog(p, key, retention_days=retention_days,
                         allow_unkeyed=key is None and Path(f"{p}.key").is_file())


def run(cfg: ForgetPatientConfig | PruneLogConfig) -> dict[str, object]:
    """Forget one patient, or prune by age; ``{"log", "deleted"}`` (predictions deleted)."""
    if isinstance(cfg, ForgetPatientConfig):
        if not cfg.patient_id.strip():
            raise ConfigError("forget-patient: patient_id= is required")
        n = open_log(cfg.log).forget_patient(cfg.patient_id.strip())
        log.info("forget-patient: %d prediction(s) of that patient deleted from %s", n, cfg.log)
    else:
        if cfg.retention_days <= 0:
            raise ConfigError(f"prune-log: retention_days must be > 0, got {cfg.retention_days}")
        n = open_log(cfg.log, cfg.retention_days).prune()
        log.info("prune-log: %d prediction(s) older than %g days deleted from %s", n,
                 cfg.retention_days, cfg.log)
    print(n)
    return {"log": cfg.log, "deleted": n}
