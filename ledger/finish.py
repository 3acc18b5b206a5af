"""The end of every stage run, written once: ``metrics.json`` (the run's
:class:`~isicstack.ledger.result.RunResult`, with its wall time), ``config.yaml`` (the resolved
config), ``provenance.json`` (what it read, the fold hash, the conditions with the stage's name,
the tuned file) and the ledger entry.

Each stage wrote these by hand, in its own order, and they drifted (one stage without
provenance, one without its time); ``isic predict`` now reads the stage from provenance and the
ledger reads all three files, so every stage ends through :func:`finish_run`.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from isicstack.data.io import write_json
from isicstack.data.provenance import write_provenance
from isicstack.ledger.result import METRICS, RunResult, read_result
from isicstack.ledger.store import log_run
from isicstack.settings.layers import save_config


def finish_run(result: RunResult, rdir: str | os.PathLike[str], cfg: Any,
               artifacts: str | os.PathLike[str], started: float | None = None,
               provenance: dict[str, Any] | None = None, track: bool = True) -> RunResult:
    """Write the run's record in ``rdir`` and log it (``track``). ``started``: the
    ``time.perf_counter()`` at the run's start (the result's ``seconds`` when it has none);
    ``provenance``: the keyword arguments of ``write_provenance`` (``inputs`` + ``fold_hash``,
    ``conditions``, ``tuned``), None when the stage wrote it at its start (a resumable run
    records its inputs before training). Returns the result as written (read back)."""
    rdir = Path(rdir)
    if started is not None and result.seconds is None:  # a stage's own timing stays
        result = replace(result, seconds=round(time.perf_counter() - started, 3))
    write_json(result.to_dict(), rdir / METRICS)
    save_config(cfg, rdir / "config.yaml")
    if provenance is not None:
        prov = dict(provenance)
        if prov.get("conditions") is not None:
            prov["conditions"] = {**prov["conditions"], "stage": result.stage}
        write_provenance(rdir, prov.pop("inputs", {}), **prov)
    written = read_result(rdir)
    if track:
        log_run(written.stage, rdir, artifacts, metrics=written.ledger_metrics())
    return written
