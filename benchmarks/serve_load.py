"""Helpers of ``bench_serve.py``: the server as a pinned subprocess, request bodies from the
smoke test set, an asyncio load generator, a slow client, and what the SQLite log holds.

Kept apart so the benchmark script reads as its plan; nothing here chooses a figure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CLI = [sys.executable, "-m", "isicstack.pipelines.cli"]


def free_port() -> int:
    """A port nobody listens on now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: int, cmd: list[str]) -> list[str]:
    """``cmd`` run on one core (``taskset``), so the server and the load never share one."""
    return ["taskset", "-c", str(core), *cmd]


class Server:
    """``isic serve`` on loopback in a subprocess pinned to ``core``; output to ``out``."""

    def __init__(self, bundle: Path, log: Path, out: Path, core: int, env: dict[str, str],
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = out
        cmd = pinned(core, [*CLI, "serve", "--profile", "smoke", f"bundle={bundle}",
                            f"port={self.port}", f"log={log}", "cpu_threads=1", *extra])
        with out.open("a") as fh:
            fh.write(f"== {' '.join(cmd)}\n")
            fh.flush()
            self.proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)

    def ready(self, timeout: float = 180.0) -> float:
        """Seconds until /readyz answers 200; raises if the process died or time ran out."""
        import httpx

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"isic serve exited {self.proc.returncode}; see {self.out}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return round(time.perf_counter() - t0, 2)
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"isic serve not ready in {timeout:g} s; see {self.out}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, the log gets no chance to tidy up."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def bodies(data: Path, lesions: int) -> list[tuple[bytes, int]]:
    """Request bodies of the test set: ``lesions=1``: each row as a one-lesion patient;
    otherwise each real patient's lesions in chunks of ``lesions`` (full chunks only, the
    rows of a chunk stay one patient). ``(body, lesions in it)``."""
    from isicstack.data.crops import CropStore
    from isicstack.data.io import load_metadata

    test = load_metadata(data / "test-metadata.csv", "test")
    with CropStore(data / "test-image.hdf5") as store:
        crop = {i: base64.b64encode(store.read_bytes(i)).decode() for i in test["isic_id"]}
    out = []
    for (pid,), rows in test.group_by("patient_id", maintain_order=True):
        les = [{**{k: v for k, v in r.items() if v is not None and k != "patient_id"},
                "crop": crop[r["isic_id"]]} for r in rows.to_dicts()]
        if lesions == 1:
            out += [(json.dumps({"patient_id": f"{pid}-{x['isic_id']}", "lesions": [x]}).encode(),
                     1) for x in les]
            continue
        for k in range(0, len(les) - lesions + 1, lesions):
            out.append((json.dumps({"patient_id": f"{pid}-{k}", "lesions": les[k:k + lesions]})
                        .encode(), lesions))
    return out


async def _client(ac: Any, queue: asyncio.Queue, stop_at: float, got: list[dict]) -> None:
    while time.perf_counter() < stop_at:
        try:
            body, n = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        t0 = time.perf_counter()
        row: dict[str, Any] = {"lesions": n, "t0": t0}
        try:
            r = await ac.post("/v1/score", content=body,
                              headers={"Content-Type": "application/json"})
            row["status"] = r.status_code
            if r.status_code == 200:
                answer = r.json()
                row["request_id"] = answer["request_id"]
                row["scorer"] = answer["lesions"][0]["scorer"]  # full or solo (few lesions)
            else:
                row["error"] = r.text[:200]
        except Exception as err:  # a refused or dropped connection: an error; client stops
            row["status"], row["error"] = 0, f"{type(err).__name__}: {err}"[:200]
        row["ms"] = 1000 * (time.perf_counter() - t0)
        got.append(row)
        if row["status"] == 0:
            return


async def _load(url: str, work: list[tuple[bytes, int]], clients: int, max_s: float,
                got: list[dict]) -> tuple[list[dict], float]:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as ac:
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(ac, queue, t0 + max_s, got) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return got, wall


def load(url: str, pool: list[tuple[bytes, int]], clients: int, requests: int, max_s: float,
         sink: list[dict] | None = None) -> tuple[list[dict], float]:
    """``clients`` concurrent clients, each sending its next request when answered, until
    ``requests`` are sent (cycling through ``pool``) or ``max_s`` seconds have passed; each
    finished request is appended to ``sink`` as it ends (another thread may watch it)."""
    work = [pool[i % len(pool)] for i in range(requests)]
    return asyncio.run(_load(url, work, clients, max_s, [] if sink is None else sink))


def summary(got: list[dict], wall: float) -> dict[str, Any]:
    """Latency percentiles (ms) of answered requests, lesions/s and requests/s over the
    run's wall time, and the errors (any answer but 200, or no answer)."""
    ok = [g for g in got if g["status"] == 200]
    ms = np.array([g["ms"] for g in ok]) if ok else np.array([np.nan])
    errors: dict[str, int] = {}
    scorers: dict[str, int] = {}
    for g in ok:
        scorers[g["scorer"]] = scorers.get(g["scorer"], 0) + 1
    for g in got:
        if g["status"] != 200:
            key = str(g["status"])
            errors[key] = errors.get(key, 0) + 1
    return {"requests": len(got), "answered": len(ok), "errors": sum(errors.values()),
            "error_kinds": errors, "first_error": next((g["error"] for g in got
                                                        if g["status"] != 200), None),
            "scored_by": scorers, "routes": ", ".join(sorted(scorers)) or "none",
            "wall_s": round(wall, 2),
            "lesions_per_s": round(sum(g["lesions"] for g in ok) / wall, 2),
            "requests_per_s": round(len(ok) / wall, 2),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)}}


def logged(path: Path) -> dict[str, int]:
    """Rows per request id in the prediction log (opened read-only)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return dict(db.execute("select request_id, count(*) from predictions "
                               "group by request_id").fetchall())


def integrity(path: Path) -> str:
    """SQLite's own check of the file ("ok" when no page or index is torn)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return str(db.execute("pragma integrity_check").fetchone()[0])


def once_each(got: list[dict], rows: dict[str, int]) -> dict[str, int]:
    """Answered requests against the log: each must hold exactly its lesions, once."""
    ok = [g for g in got if g["status"] == 200]
    return {"answered": len(ok),
            "missing": sum(g["request_id"] not in rows for g in ok),
            "wrong_count": sum(rows.get(g["request_id"], g["lesions"]) != g["lesions"]
                               for g in ok)}


def slow_client(url: str, body: bytes, seconds: float, result: dict[str, Any]) -> None:
    """A client that announces ``body`` and sends it at one byte a second for ``seconds``,
    then hangs up (run in a thread beside the load)."""
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /v1/score HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sent = 0
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(head)
            while time.perf_counter() - t0 < seconds and sent < len(body):
                s.sendall(body[sent:sent + 1])
                sent += 1
                time.sleep(1.0)
    except OSError as err:
        result["error"] = f"{type(err).__name__}: {err}"
    result.update(bytes_sent=sent, seconds=round(time.perf_counter() - t0, 1))


def serve_env(key: str) -> dict[str, str]:
    """The server's environment: a log key of this run, no tracking, offline hub."""
    return {**os.environ, "ISIC_LOG_KEY": key, "ISIC_TRACKING": "none", "HF_HUB_OFFLINE": "1"}
