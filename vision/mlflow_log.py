"""The image stage's Lightning side of tracking, and a quiet console.

Why here: a fold's Trainer is the only place its per-step losses exist. Every fold logs into the
stage run's one MLflow run (:func:`isicstack.ledger.store.open_run`), its series prefixed by
the fold (``fold0-train/loss``), so ``mlflow.search_runs`` returns one run per stage run; the
config, OOF/fold scores and provenance are added when the stage ends
(:func:`isicstack.ledger.store.log_run`).

Lightning repeats its device lines ("GPU available ...", "Using bfloat16 AMP") for every Trainer,
i.e. for every fold, and advertises litlogger each time: each distinct line is shown once per
process, the advertisement never (a logging filter, no patching).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from isicstack.ledger.store import COSTS, open_run

LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero",
                     "lightning_fabric.utilities.rank_zero",
                     "pytorch_lightning.accelerators.cuda",
                     "lightning.pytorch.utilities.rank_zero")


class OncePerProcess(logging.Filter):
    """INFO lines pass once per process; the litlogger advertisement never; warnings always."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        text = record.getMessage()
        if "litlogger" in text:
            return False
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


_FILTER = OncePerProcess()


def quiet_lightning() -> None:
    """Install the filter on Lightning's banner loggers (idempotent)."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def fold_loggers(artifacts: str | os.PathLike[str], rdir: str | os.PathLike[str],
                 fold: int) -> list[Any]:
    """Lightning loggers a fold adds to its CSV log: an MLflow logger into the stage's run when
    tracking is on, else none. Also quiets the banners (this is where each Trainer is built)."""
    quiet_lightning()
    opened = open_run(rdir, artifacts)
    if opened is None:
        return []
    from pytorch_lightning.loggers import MLFlowLogger

    class FoldLogger(MLFlowLogger):
        """Metrics only (the config is logged once, by the stage), timed, run left open."""

        @property
        def experiment(self) -> Any:
            # Lightning's property calls mlflow.set_tracking_uri, which also sets the process's
            # MLFLOW_TRACKING_URI: a later stage run in this process would log to this store
            return self._mlflow_client

        def log_hyperparams(self, params: Any) -> None:  # config params come from config.yaml
            return None

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            t0 = time.perf_counter()
            try:
                super().log_metrics(metrics, step)
            except Exception as err:  # a store failing mid-fit must not stop the fit
                logging.getLogger(__name__).debug("tracking: fold metrics not logged: %s", err)
            finally:
                COSTS[str(rdir)] = COSTS.get(str(rdir), 0.0) + time.perf_counter() - t0

        def finalize(self, status: str = "success") -> None:  # the stage ends the run
            return None

    uri, run_id = opened
    return [FoldLogger(tracking_uri=uri, run_id=run_id, prefix=f"fold{fold}",
                       save_dir=str(Path(rdir) / f"fold{fold}"))]
