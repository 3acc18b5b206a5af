"""Every stage run in one ledger: an MLflow run per stage run, read from the run's own folder.

Why: each run already leaves ``metrics.json``, ``config.yaml`` and ``provenance.json`` (inputs by
content, fold hash, the conditions of :mod:`isicstack.conditions`), but comparing 40 runs meant
opening files one by one. :func:`log_run` copies those records into MLflow (params = the flat
resolved config, metrics = the numbers the caller hands over: a stage run's result, in one shape
for every stage (:class:`~isicstack.ledger.result.RunResult`: OOF / fold pAUC and AUC, seconds,
the stage's details); tags = stage, profile, fold and input hashes, conditions; the files as
artifacts); nothing is recomputed, so there is one writer, and the ledger knows no stage.

Where runs go, ``ISIC_TRACKING``: ``auto`` (default) = ``MLFLOW_TRACKING_URI`` when set, else
``sqlite:///<artifacts>/mlflow.db`` (artifacts in ``<artifacts>/mlartifacts``); ``none`` = off;
any other value = that tracking URI. MLflow is the optional extra ``mlflow``: without it tracking
is off, said once. A store that cannot be reached or written is a warning; the run goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from isicstack.conditions import describe
from isicstack.settings.keys import flatten  # params: the config's dotted keys (optim.lr)
from isicstack.settings.layers import to_dict

log = logging.getLogger(__name__)

ENV = "ISIC_TRACKING"
OFF = {"none", "off", "false", "0", "no"}
EXPERIMENT = "isicstack"  # MLFLOW_EXPERIMENT_NAME overrides
KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's runs view, not GenAI
FILES = ("metrics.json", "config.yaml", "provenance.json", "report.md", "report.json")
COSTS: dict[str, float] = {}  # run folder -> seconds spent in tracking calls (benchmark)
_SUSPENDED: ContextVar[bool] = ContextVar("isic_tracking_suspended", default=False)
_CLIENTS: dict[tuple[str, str], tuple[Any, str]] = {}  # (uri, experiment) -> client, its id
_FAILED: set[str] = set()
_ACTIVE: dict[str, dict[str, Any]] = {}  # run folder -> open MLflow run of an image stage
_NOTED: list[bool] = []


def store_uri(artifacts: str | os.PathLike[str]) -> str:
    """The tracking URI for runs under ``artifacts``, whether or not tracking is on."""
    value = os.environ.get(ENV, "").strip()
    if value and value.lower() not in OFF and value.lower() != "auto":
        return value
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(artifacts).resolve() / 'mlflow.db'}"


def tracking_uri(artifacts: str | os.PathLike[str]) -> str | None:
    """:func:`store_uri`, or None when tracking is off (``ISIC_TRACKING=none``, suspended)."""
    if _SUSPENDED.get() or os.environ.get(ENV, "").strip().lower() in OFF:
        return None
    return store_uri(artifacts)


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """No tracking inside (a tuning trial's private stage run: the trial itself is logged)."""
    token = _SUSPENDED.set(True)
    try:
        yield
    finally:
        _SUSPENDED.reset(token)


def reachable(uri: str) -> bool:
    """A server URI answers a TCP connect within 2 s (MLflow itself retries for minutes)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return True
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "localhost", port), timeout=2).close()
    except OSError:
        return False
    return True


def client_for(uri: str, name: str = "") -> tuple[Any, str] | None:
    """The client and the id of experiment ``name`` (default: the stages' one) on ``uri``;
    None (said once) without MLflow. Raises when the store fails."""
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    if (uri, name) in _CLIENTS or uri in _FAILED:
        return _CLIENTS.get((uri, name))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline project: no phoning home
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        if not _NOTED:
            _NOTED.append(True)
            log.info("tracking off: MLflow is not installed (pip install 'isicstack[mlflow]'; "
                     "`make setup` installs every extra)")
        _FAILED.add(uri)
        return None
    if not reachable(uri):
        raise ConnectionError(f"no MLflow server answers at {uri}")
    location = None
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        location = (db.parent / "mlartifacts").resolve().as_uri()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    try:
        exp_id = exp.experiment_id if exp else client.create_experiment(
            name, artifact_location=location, tags=KIND)
    except Exception:  # another process created it first (else: the same error again)
        exp_id = client.get_experiment_by_name(name).experiment_id
    _CLIENTS[(uri, name)] = (client, exp_id)
    return _CLIENTS[(uri, name)]


def warn_failed(what: str, uri: str, err: Exception) -> None:
    """One warning per store; later calls skip it (no minutes of retries per fold)."""
    if uri not in _FAILED:
        log.warning("tracking: %s failed on %s (%s: %s); the run goes on without tracking",
                    what, uri, type(err).__name__, (str(err).splitlines() or [""])[0][:300])
    _FAILED.add(uri)


def mlflow_key(name: str) -> str:
    """An MLflow-safe key (alphanumerics, ``_ - . /`` and spaces)."""
    return re.sub(r"[^/\w.\- ]", "_", name)


def clip(value: Any, limit: int) -> str:
    """A param or tag value: text as is, anything else as JSON, cut to MLflow's ``limit``."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path: Path) -> dict[str, Any]:
    """A JSON or YAML mapping ({} when absent)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "{}"
    doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return doc if isinstance(doc, dict) else {}


def _numbers(block: Mapping[str, Any], prefix: str = "", step: int | None = None
             ) -> Iterator[tuple[str, int, float]]:
    """``(key, step, value)`` of every number in ``block``: nested keys are dotted, and a key
    of digits (a fold id) is the step of a series (``fold_pauc`` {0: v, 1: v} = one series)."""
    for key, value in block.items():
        k = str(key)
        name, at = (prefix, int(k)) if k.isdigit() and step is None else (
            f"{prefix}.{k}" if prefix else k, step)
        if isinstance(value, Mapping):
            yield from _numbers(value, name, at)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and name:
            yield name, at or 0, float(value)


def _metrics(block: Mapping[str, Any], now: int) -> list[Any]:
    """The numbers of ``block`` as MLflow metrics (see :func:`_numbers`)."""
    from mlflow.entities import Metric

    return [Metric(mlflow_key(k), v, now, step) for k, step, v in _numbers(block)]


def _tags(stage: str, folder: Path, artifacts: str | os.PathLike[str], cfg: dict[str, Any],
          prov: dict[str, Any]) -> dict[str, str]:
    cond = prov.get("conditions")
    tags = {"isic.stage": stage, "isic.run": folder.name, "isic.profile": str(cfg.get("profile",
            "")), "isic.fold_hash": str(prov.get("fold_hash") or ""),
            "isic.artifacts": str(Path(artifacts).resolve()), "isic.conditions": describe(cond),
            "isic.tuned": clip(prov.get("tuned") or "no", 8000)}
    tags.update({f"isic.input.{role}": str(rec.get("sha256", ""))
                 for role, rec in (prov.get("inputs") or {}).items() if isinstance(rec, dict)})
    tags.update({f"isic.cond.{k}": clip(v, 8000) for k, v in flatten(cond or {}).items()})
    return {mlflow_key(k): v for k, v in tags.items()}


def _record(client: Any, exp_id: str, stage: str, folder: Path,
            artifacts: str | os.PathLike[str], cfg: Any, metrics: Mapping[str, Any]) -> str:
    """Create (or complete the open) MLflow run of ``folder`` and log its records."""
    from mlflow.entities import Param, RunTag

    config = _read(folder / "config.yaml") or (to_dict(cfg) if cfg is not None else {})
    prov = _read(folder / "provenance.json")
    now = int(time.time() * 1000)
    seconds = metrics.get("seconds")
    seconds = seconds if isinstance(seconds, (int, float)) else 0
    run_id = (_ACTIVE.pop(str(folder.resolve()), None) or {}).get("run_id") or client.create_run(
        exp_id, start_time=now - int(1000 * seconds), run_name=folder.name).info.run_id
    tags = [RunTag(k, v) for k, v in _tags(stage, folder, artifacts, config, prov).items()]
    params = [Param(mlflow_key(k), clip(v, 6000)) for k, v in flatten(config).items()]
    for i in range(0, max(len(tags), len(params)), 100):
        client.log_batch(run_id, params=params[i:i + 100], tags=tags[i:i + 100])
    entries = _metrics(metrics, now)
    for i in range(0, len(entries), 1000):
        client.log_batch(run_id, metrics=entries[i:i + 1000])
    for name in FILES:
        if (folder / name).is_file():
            client.log_artifact(run_id, str(folder / name))
    for png in sorted(folder.glob("*.png")):  # a report's figures (run folders have none)
        client.log_artifact(run_id, str(png), "figures")
    client.set_terminated(run_id, "FINISHED", end_time=now)
    return run_id


def log_run(stage: str, folder: str | os.PathLike[str], artifacts: str | os.PathLike[str],
            cfg: Any = None, metrics: Mapping[str, Any] | None = None) -> str | None:
    """Log the finished run in ``folder`` as one MLflow run; its id, or None. Never raises:
    tracking must not cost a finished run. ``cfg`` is used when the folder has no config.yaml;
    ``metrics``: the numbers to log, from the caller, which knows what its run produced (a
    stage run's :meth:`~isicstack.ledger.result.RunResult.ledger_metrics`, the report's
    per-model scores), nested keys dotted, a fold id a step; ``seconds`` dates the run's start."""
    uri = tracking_uri(artifacts)
    if uri is None:
        return None
    t0, folder = time.perf_counter(), Path(folder)
    try:
        found = client_for(uri)
        if found is None:
            return None
        run_id = _record(*found, stage, folder, artifacts, cfg, metrics or {})
        log.info("tracking: %s run %s logged to %s (run %s)", stage, folder.name, uri, run_id)
        return run_id
    except Exception as err:
        warn_failed(f"logging {stage} run {folder.name}", uri, err)
        return None
    finally:
        COSTS[str(folder)] = COSTS.get(str(folder), 0.0) + time.perf_counter() - t0


def open_run(folder: str | os.PathLike[str], artifacts: str | os.PathLike[str]
             ) -> tuple[str, str] | None:
    """The MLflow run a stage run logs into while it trains (created on first use; completed
    by :func:`log_run`, marked FAILED at exit if it never is): ``(uri, run_id)`` or None."""
    uri = tracking_uri(artifacts)
    if uri is None:
        return None
    key = str(Path(folder).resolve())
    t0 = time.perf_counter()
    try:
        if key not in _ACTIVE:
            found = client_for(uri)
            if found is None:
                return None
            client, exp_id = found
            run = client.create_run(exp_id, run_name=Path(folder).name)
            _ACTIVE[key] = {"uri": uri, "run_id": run.info.run_id}
        return _ACTIVE[key]["uri"], _ACTIVE[key]["run_id"]
    except Exception as err:
        warn_failed(f"opening a run for {Path(folder).name}", uri, err)
        return None
    finally:
        COSTS[str(folder)] = COSTS.get(str(folder), 0.0) + time.perf_counter() - t0


@atexit.register
def _fail_open_runs() -> None:
    """A stage that died after opening its MLflow run: FAILED, not RUNNING forever."""
    for rec in list(_ACTIVE.values()):
        with contextlib.suppress(Exception):
            client_for(rec["uri"])[0].set_terminated(rec["run_id"], "FAILED")  # type: ignore
    _ACTIVE.clear()
