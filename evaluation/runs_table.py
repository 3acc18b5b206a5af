"""``isic runs``: the tracked stage runs as one table (name, stage, profile, fold hash, OOF pAUC,
when), newest first, from the store the stages log to (:mod:`isicstack.ledger.store`).

Why: "which of my last 40 runs scored best, on which folds?" without opening 40 folders. It only
reads: a store that does not exist yet shows no runs and is not created.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from isicstack.evaluation.config import RunsConfig
from isicstack.extras import require
from isicstack.ledger.result import POOLED_PAUC
from isicstack.ledger.store import EXPERIMENT, reachable, store_uri

log = logging.getLogger(__name__)
COLUMNS = ("name", "stage", "profile", "fold hash", "OOF pAUC", "when", "run id")


def tracked_runs(artifacts: str | os.PathLike[str], stage: str = "",
                 limit: int = 50) -> tuple[str, list[dict[str, Any]]]:
    """The store's URI and its stage runs, newest first (``stage`` filters)."""
    uri = store_uri(artifacts)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return uri, []
    if not reachable(uri):
        raise ValueError(f"no MLflow server answers at {uri}")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    require("mlflow", needed_by="the run ledger (isic runs, make mlflow-ui)",
            instead="read artifacts/runs/<name>/metrics.json")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
    if exp is None:
        return uri, []
    where = f"tags.`isic.stage` = '{stage}'" if stage else ""
    runs = client.search_runs([exp.experiment_id], filter_string=where, max_results=limit,
                              order_by=["attributes.start_time DESC"])
    rows = []
    for r in runs:
        tags, pauc = r.data.tags, r.data.metrics.get(POOLED_PAUC)  # a run result's, any stage
        rows.append({"name": r.info.run_name, "stage": tags.get("isic.stage", ""),
                     "profile": tags.get("isic.profile", ""),
                     "fold_hash": tags.get("isic.fold_hash", ""), "oof_pauc": pauc,
                     "when": dt.datetime.fromtimestamp(r.info.start_time / 1000),
                     "status": r.info.status, "run_id": r.info.run_id})
    return uri, rows


def print_table(uri: str, rows: list[dict[str, Any]], stage: str = "") -> None:
    """The rows as a rich table (a note when there are none)."""
    console = Console()
    if not console.is_terminal:  # a pipe or file: no 80-column wrap of ids and hashes
        console = Console(width=160)
    if not rows:
        console.print(f"no tracked {stage + ' ' if stage else ''}runs in {uri}")
        return
    table = Table(title=f"tracked runs ({uri})")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col == "OOF pAUC" else "left")
    for r in rows:
        status = "" if r["status"] == "FINISHED" else f" ({r['status'].lower()})"
        table.add_row(r["name"] + status, r["stage"], r["profile"], r["fold_hash"],
                      "-" if r["oof_pauc"] is None else f"{r['oof_pauc']:.4f}",
                      r["when"].strftime("%Y-%m-%d %H:%M"), r["run_id"][:8])
    console.print(table)


def run(cfg: RunsConfig) -> list[dict[str, Any]]:
    """``isic runs [stage=image] [limit=N]``: print the table, return its rows."""
    uri, rows = tracked_runs(cfg.artifacts, cfg.stage, cfg.limit)
    print_table(uri, rows, cfg.stage)
    return rows
