"""Concurrent requests scored together, and logged before they are answered.

The CNNs and GBDTs score far more lesions a second in a batch than one by one, so one thread
takes the first waiting request, lets others join for ``wait_s`` (up to ``max_lesions``
lesions), scores them in one pass (each patient is still a patient of its own: ids are made
unique per request), writes every lesion's log row in one committed transaction, and only then
hands each request its answer. A batch whose rows cannot be committed is answered with the
error, never with scores: nothing is acknowledged that the log does not hold.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from isicstack.serving.scorer import LesionScore, Scorer

log = logging.getLogger(__name__)
SEP = "\x1f"  # request number + SEP + id: unique across the requests of a batch


class Store(Protocol):
    """What the batcher needs of the prediction log."""

    def record(self, rows: list[dict[str, Any]]) -> None: ...


@dataclass
class Job:
    """One request waiting to be scored."""

    request_id: str
    rows: pl.DataFrame                        # one patient's lesions (test schema)
    crops: dict[str, np.ndarray]
    logged: list[dict[str, Any]]              # per lesion: what the log keeps of its input
    started: float = field(default_factory=time.perf_counter)
    future: Future = field(default_factory=Future)  # cancelled: timed out, never scored


class Batcher:
    """One scoring thread in front of a :class:`Scorer` (which is not thread-safe)."""

    def __init__(self, scorer: Scorer, store: Store, max_lesions: int, wait_s: float) -> None:
        self.scorer, self.store = scorer, store
        self.max_lesions, self.wait_s = max_lesions, wait_s
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.batches = 0
        self.thread = threading.Thread(target=self._loop, name="scorer", daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def submit(self, job: Job) -> Future:
        self.queue.put(job)
        return job.future

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        jobs, size = [first], first.rows.height
        deadline = time.perf_counter() + self.wait_s
        while size < self.max_lesions:
            try:
                job = self.queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += job.rows.height
        return jobs, False

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            jobs, stop = self._gather(first)
            live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if live:
                self._run(live)
            if stop:
                return

    def _run(self, jobs: list[Job]) -> None:
        try:
            rows, crops = merge(jobs)
            scored = self.scorer.score(rows, crops)
        except Exception as err:  # a scoring failure answers its requests, the thread lives
            log.exception("serve: scoring a batch of %d request(s) failed", len(jobs))
            for j in jobs:
                j.future.set_exception(err)
            return
        answers, start = [], 0
        for j in jobs:  # each request's answers, with the caller's own ids back
            answers.append([unmangle(s) for s in scored[start:start + j.rows.height]])
            start += j.rows.height
        now = time.time()
        rows_out = [log_row(j, s, lg, now) for j, ans in zip(jobs, answers, strict=True)
                    for s, lg in zip(ans, j.logged, strict=True)]
        try:
            self.store.record(rows_out)  # committed before any answer leaves
        except Exception as err:
            log.error("serve: the prediction log refused %d row(s): %s", len(rows_out), err)
            for j in jobs:
                j.future.set_exception(err)
            return
        self.batches += 1
        for j, ans in zip(jobs, answers, strict=True):
            j.future.set_result(ans)


def merge(jobs: list[Job]) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """The requests' rows as one frame whose ids (lesion and patient) are unique per request."""
    frames, crops = [], {}
    for k, j in enumerate(jobs):
        tag = f"{k}{SEP}"
        frames.append(j.rows.with_columns((pl.lit(tag) + pl.col(c)).alias(c)
                                          for c in ("isic_id", "patient_id")))
        crops.update({tag + i: c for i, c in j.crops.items()})
    return pl.concat(frames, how="vertical"), crops


def unmangle(s: LesionScore) -> LesionScore:
    """The lesion's answer with the caller's own ids back."""
    s.isic_id = s.isic_id.split(SEP, 1)[1]
    s.patient_id = s.patient_id.split(SEP, 1)[1]
    return s


def log_row(job: Job, s: LesionScore, logged: dict[str, Any], now: float) -> dict[str, Any]:
    """The prediction log's row of one scored lesion (``serving.predlog``)."""
    return {"ts": now, "request_id": job.request_id, "lesion_id": s.isic_id,
            "patient_id": s.patient_id, "model_version": s.version,
            "scorer": s.scorer, "model": s.model, "score": s.score, "risk": s.risk,
            "flag": s.flag, "latency_ms": 1000 * (time.perf_counter() - job.started),
            **{k: v for k, v in logged.items() if k != "warn"}}
