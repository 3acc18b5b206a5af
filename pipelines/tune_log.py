"""Optuna trials in the MLflow ledger: one MLflow run per finished trial, linked to its study.

Each study gets the experiment ``optuna/<study name>`` on the store of
:mod:`isicstack.ledger.store`; a trial's run carries its parameters, its value as ``oof_pauc``,
the running fold pAUCs it reported (the pruner's series) and the tags ``optuna.study`` /
``optuna.trial`` / ``optuna.state``.

Why not optuna-integration's ``MLflowCallback``: it is deprecated since Optuna 4.9 (removed in
6.0), sets MLflow's global state, and an unavailable store raises out of ``study.optimize``; here a
failing store is one warning and the sweep goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from isicstack.ledger.store import COSTS, client_for, clip, mlflow_key, tracking_uri, warn_failed

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


class TrialLogger:
    """``study.optimize(callbacks=[...])`` callback; see the module docstring."""

    def __init__(self, artifacts: str, stage: str = "", profile: str = "") -> None:
        self.artifacts, self.stage, self.profile = artifacts, stage, profile

    def __call__(self, study: Any, trial: Any) -> None:
        uri = tracking_uri(self.artifacts)
        if uri is None:
            return
        t0 = time.perf_counter()
        try:
            found = client_for(uri, f"optuna/{study.study_name}")
            if found is not None:
                self._log(*found, study, trial)
        except Exception as err:
            warn_failed(f"logging trial {trial.number}", uri, err)
        finally:
            key = f"optuna/{study.study_name}"
            COSTS[key] = COSTS.get(key, 0.0) + time.perf_counter() - t0

    def _log(self, client: Any, exp_id: str, study: Any, trial: Any) -> None:
        from mlflow.entities import Metric, Param, RunTag

        def ms(moment: Any) -> int:
            return int((moment.timestamp() if moment is not None else time.time()) * 1000)

        start, end = ms(trial.datetime_start), ms(trial.datetime_complete)
        run_id = client.create_run(exp_id, start_time=start,
                                   run_name=f"trial {trial.number}").info.run_id
        tags = {"optuna.study": study.study_name, "optuna.trial": str(trial.number),
                "optuna.state": trial.state.name, "isic.stage": f"tune-{self.stage}",
                "isic.profile": self.profile,
                **{f"optuna.user.{k}": clip(v, 8000) for k, v in trial.user_attrs.items()}}
        metrics = [Metric("running_fold_pauc", float(v), end, int(step))
                   for step, v in trial.intermediate_values.items()]
        if trial.value is not None:
            metrics.append(Metric("oof_pauc", float(trial.value), end, 0))
        params = [Param(mlflow_key(k), clip(v, 6000)) for k, v in trial.params.items()]
        client.log_batch(run_id, metrics=metrics, params=params[:100],
                         tags=[RunTag(mlflow_key(k), v) for k, v in tags.items()])
        for i in range(100, len(params), 100):
            client.log_batch(run_id, params=params[i:i + 100])
        client.set_terminated(run_id, STATUS.get(trial.state.name, "FINISHED"), end_time=end)


def trial_callbacks(cfg: Any) -> list[Callable[[Any, Any], None]]:
    """The callbacks for ``isic tune``'s ``study.optimize``: none when tracking is off."""
    if tracking_uri(cfg.artifacts) is None:
        return []
    return [TrialLogger(cfg.artifacts, cfg.stage, cfg.profile)]
