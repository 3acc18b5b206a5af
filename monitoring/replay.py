"""``isic replay``: send a generated deployment stream with planted shifts through a RUNNING
``isic serve``, so a monitoring setup (``isic monitor``) can be tested end to end.

Always over HTTP (never in-process): the point is to exercise the service as a clinic would,
its validation, batching and log included. Windows (``monitoring.stream``) go in order, each
one finished before the next starts, so the log's lesion order keeps the window boundaries and
``isic monitor window=<window>`` on a fresh log sees exactly these windows. Within a window,
``clients`` threads send one request per patient (a patient larger than the server's
``max_lesions`` is sent in consecutive requests). After a window, outcomes are posted: every
flagged lesion (reason ``biopsy``) plus a random ``audit`` share of the others (reason
``audit``), as a clinic that biopsies what it flags and audits a sample would. No request is
retried: a retry after a timeout could log a lesion twice and shift every later window.

Writes ``<log stem>.replay.json`` beside the server's log: each window's shift, lesion range,
positives, flags and outcomes posted (the key the benchmark reads flag delays against).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from isicstack.data.io import write_json
from isicstack.monitoring.replay_config import ReplayConfig
from isicstack.monitoring.stream import Window, layout, synth_settings, windows

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """The service refused or failed a request (its status and detail in the message)."""


class Client:
    """A tiny JSON-over-HTTP client of ``isic serve`` (stdlib: nothing to install)."""

    def __init__(self, url: str, token: str = "", timeout_s: float = 300.0) -> None:
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise ServiceError(f"{method} {path}: HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise ServiceError(f"{method} {path}: {err}; is `isic serve` running at "
                               f"{self.url}?") from None


def requests_of(win: Window, max_lesions: int) -> list[dict[str, Any]]:
    """The window's score requests: one per patient (split above ``max_lesions``), metadata
    without nulls, each crop base64."""
    out = []
    for (pid,), part in win.rows.drop("target").group_by("patient_id", maintain_order=True):
        lesions = [{**{k: v for k, v in row.items() if v is not None and k != "patient_id"},
                    "crop": base64.b64encode(win.crops[row["isic_id"]]).decode()}
                   for row in part.iter_rows(named=True)]
        for s in range(0, len(lesions), max_lesions):
            out.append({"patient_id": pid, "lesions": lesions[s:s + max_lesions]})
    return out


def send_window(win: Window, client: Client, pool: ThreadPoolExecutor, max_lesions: int
                ) -> tuple[dict[str, dict[str, Any]], int]:
    """Every lesion of ``win`` scored by the service: ``{isic_id: its answer}``, requests."""
    futures = [pool.submit(client.call, "POST", "/v1/score", r)
               for r in requests_of(win, max_lesions)]
    answers: dict[str, dict[str, Any]] = {}
    for f in futures:
        for les in f.result()["lesions"]:
            answers[les["isic_id"]] = les
    missing = set(win.rows["isic_id"].to_list()) - set(answers)
    if missing:
        raise ServiceError(f"window {win.index}: {len(missing)} lesion(s) not answered")
    return answers, len(futures)


def outcomes_of(win: Window, answers: dict[str, dict[str, Any]], audit: float,
                rng: np.random.Generator) -> list[dict[str, Any]]:
    """The outcomes a clinic reports: every flagged lesion (biopsy), an audit sample of the
    others (exactly ``round(audit * unflagged)``, drawn at random)."""
    labels = dict(zip(win.rows["isic_id"].to_list(), win.rows["target"].to_list(), strict=True))
    flagged = [i for i in labels if answers[i].get("flag")]
    others = [i for i in labels if not answers[i].get("flag")]
    picked = rng.choice(len(others), round(audit * len(others)), replace=False) if others else []
    return ([{"isic_id": i, "malignant": bool(labels[i]), "reason": "biopsy"} for i in flagged]
            + [{"isic_id": others[k], "malignant": bool(labels[others[k]]), "reason": "audit"}
               for k in sorted(picked)])


def manifest_path(cfg: ReplayConfig) -> Path:
    """``<log stem>.replay.json`` beside the server's log."""
    path = Path(cfg.log)
    return path.with_name(f"{path.stem}.replay.json")


def run(cfg: ReplayConfig) -> dict[str, Any]:
    """Send the stream; write and return the manifest."""
    train = synth_settings(cfg)
    client = Client(cfg.url, os.environ.get(cfg.token_env, ""), cfg.timeout_s)
    model = client.call("GET", "/v1/model")
    max_lesions = int(model.get("limits", {}).get("max_lesions", 200))
    doc: dict[str, Any] = {
        "format": 1, "url": cfg.url, "model_version": model.get("version"),
        "window": cfg.window, "seed": cfg.seed, "training_seed": train.seed,
        "synth_profile": cfg.synth_profile or cfg.profile, "layout": layout(cfg),
        "audit": cfg.audit, "clients": cfg.clients, "windows": []}
    path = manifest_path(cfg)
    t0 = time.perf_counter()
    stream = windows(cfg, train)
    with ThreadPoolExecutor(cfg.clients) as pool, ThreadPoolExecutor(1) as ahead:
        nxt: Future[Window | None] = ahead.submit(next, stream, None)  # render while scoring
        while (win := nxt.result()) is not None:
            nxt = ahead.submit(next, stream, None)
            t = time.perf_counter()
            answers, requests = send_window(win, client, pool, max_lesions)
            scored = time.perf_counter() - t
            posted = outcomes_of(win, answers, cfg.audit,
                                 np.random.default_rng([cfg.seed, 11, win.index]))
            list(pool.map(lambda o: client.call("POST", "/v1/outcomes", o), posted))
            entry = {**win.summary(), "requests": requests,
                     "flagged": sum(bool(a.get("flag")) for a in answers.values()),
                     "biopsy": sum(o["reason"] == "biopsy" for o in posted),
                     "audit": sum(o["reason"] == "audit" for o in posted),
                     "scored_seconds": round(scored, 2)}
            doc["windows"].append(entry)
            write_json(doc, path)  # as it goes: an interrupted replay says how far it got
            log.info("replay: window %d (%s): %d lesions, %d flagged, %d outcomes, %.1f s",
                     win.index, win.shift, entry["lesions"], entry["flagged"], len(posted),
                     scored)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(doc, path)
    log.info("replay: %d window(s) of %d lesions sent to %s in %.0f s; manifest %s",
             len(doc["windows"]), cfg.window, cfg.url, doc["seconds"], path)
    return doc
