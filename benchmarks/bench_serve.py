"""``isic serve`` under load on loopback, its faults, and a slow client (issue 29).

The smoke chain and its bundle are trained in their own artifacts folder (reused when there):
``make all PROFILE=smoke`` then ``isic bundle``. The real server (``isic serve``, a subprocess on
127.0.0.1, a fresh prediction log) runs on core 0 (``taskset``); this script, the load
generator, on core 1. Measured, each bounded in requests and seconds:

- load: 1, 8 and 32 concurrent clients x requests of 1 lesion (each test row as a one-lesion
  patient) and of 50 lesions (50 rows of one real test patient): p50/p95/p99 latency of
  answered requests, lesions/s over the cell's wall time, errors (anything but a 200, goal 0),
  and, reading the SQLite log after, every answered request in it exactly once;
- the batch path: ``isic predict`` on the same test rows on core 0 (cpu_threads=1,
  num_workers=0), its lesions/s from its scoring seconds (predict.json); goal: the service
  at 8 clients >= 0.5 of it;
- faults: SIGKILL of the server mid-load, then a restart on the same log (every acknowledged
  row present, no request half-logged, ``PRAGMA integrity_check``, answers again); a read-only
  log location and a full disk (tiny tmpfs mounts, root only; else skipped with the reason)
  must stop ``isic serve`` at start with a message naming the path;
- a slow client sending its body at 1 byte/s for 30 s beside 8 clients: their p95 against
  the same load without it (goal within 1.2x).

Writes ``benchmarks/results/serve.json``.

    python benchmarks/bench_serve.py [--art artifacts/bench_serve]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import serve_load as sl  # noqa: E402
from serve_faults import full_disk, read_only, sigkill  # noqa: E402

from isicstack.conditions import run_conditions, usable_cores  # noqa: E402
from isicstack.data.io import write_json  # noqa: E402

SERVER_CORE, LOAD_CORE = 0, 1
CLIENTS = (1, 8, 32)
SIZES = {1: (300, 30.0), 50: (40, 45.0)}  # lesions per request: (max requests, max seconds)
SLOW_S = 30.0
MEANING = {
    "load": "per cell l<lesions per request>_c<clients>: latency percentiles (ms) of answered "
            "requests; lesions_per_s = lesions answered / the cell's wall seconds; errors = "
            "answers other than 200 or no answer; scored_by = requests per route (solo: the "
            "GBDT without patient context, for patients with fewer than the bundle's "
            "max_lesions lesions; full: the submitted stack, what isic predict scores)",
    "log_check": "answered requests of the load cells against the SQLite log: missing = not "
                 "in it, wrong_count = its rows != its lesions (goal 0 and 0)",
    "batch_path": "isic predict on the same test rows, one core: lesions_per_s = rows / the "
                  "scoring seconds it reports (models loaded and files written not counted)",
    "ratio_8_clients": "service lesions/s at 8 clients / batch path lesions/s (goal >= 0.5)",
    "faults": "sigkill: acknowledged = requests answered 200 before the kill; missing = of "
              "those, not in the log after the restart (goal 0); partial = request ids whose "
              "rows in the log != their lesions (goal 0); read_only / full_disk: exit status "
              "and whether the message names the log path",
    "slow_client": "p95 (ms) of 8 clients without and with one client sending 1 byte/s for "
                   f"{SLOW_S:g} s; ratio = with / without (goal <= 1.2)",
}


def rel(path: Path) -> str:
    return os.path.relpath(path, ROOT)


def chain(art: Path, log: Path) -> Path:
    """The smoke chain in ``art/chain`` (``make all PROFILE=smoke``; reused when complete):
    this interpreter's environment, whichever venv or PYTHONPATH that is."""
    out = art / "chain"
    done = out / "made_by_bench_serve"  # written once `make all` has finished
    if done.is_file():
        return out
    shutil.rmtree(art / "bundle", ignore_errors=True)  # made from the chain trained before
    venv = Path(sys.prefix)
    isic = f"{sys.executable} -m isicstack.pipelines.cli"
    subprocess.run(["make", "-o", str(venv / ".installed"), "all", "PROFILE=smoke",
                    f"ARTIFACTS={rel(out)}", f"VENV={venv}", f"ISIC={isic}"], cwd=ROOT,
                   check=True, stdout=log.open("a"), stderr=subprocess.STDOUT)
    done.write_text("make all PROFILE=smoke\n")
    return out


def bundle(chain_dir: Path, data: Path, out: Path, log: Path) -> Path:
    """The chain's bundle (``isic bundle``, not registered; reused while the chain is)."""
    if (out / "bundle.json").is_file():
        return out
    subprocess.run([*sl.CLI, "bundle", "--profile", "smoke", f"artifacts={rel(chain_dir)}",
                    # quoted: a bare `off` is read as YAML's false, which `register` refuses
                    f"data_dir={rel(data)}", f"out_dir={rel(out)}", "register='off'"], cwd=ROOT,
                   check=True, stdout=log.open("a"), stderr=subprocess.STDOUT)
    return out


def batch_path(data: Path, chain_dir: Path, tmp: Path, log: Path) -> dict[str, Any]:
    """``isic predict`` on the test rows on the server's core, one thread, no workers."""
    preds = tmp / "predict"
    cmd = sl.pinned(SERVER_CORE, [*sl.CLI, "predict", "--profile", "smoke",
                                  f"data_dir={rel(data)}", f"artifacts={rel(chain_dir)}",
                                  f"out={rel(tmp / 'submission.csv')}", f"preds_dir={rel(preds)}",
                                  "cpu_threads=1", "num_workers=0", "accelerator=cpu"])
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=log.open("a"), stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    info = json.loads((preds / "predict.json").read_text())
    scoring = sum(info["seconds"].values())
    return {"rows": info["rows"], "models": info["models"], "scoring_seconds": round(scoring, 2),
            "total_seconds": info["total_seconds"], "command_wall_s": round(wall, 1),
            "lesions_per_s": round(info["rows"] / scoring, 2),
            "lesions_per_s_whole_command": round(info["rows"] / wall, 2)}


def cell(clients: int, lesions: int) -> str:
    """A load cell's key (zero-padded: the results file lists cells in order)."""
    return f"l{lesions:02d}_c{clients:02d}"


def load_matrix(server: sl.Server, data: Path) -> tuple[dict[str, Any], list[dict]]:
    """Every (clients, lesions) cell against one running server."""
    cells, every = {}, []
    for lesions, (requests, max_s) in SIZES.items():
        pool = sl.bodies(data, lesions)
        sl.load(server.url, pool, 2, 4, 60)  # warm-up: first passes through the models
        for clients in CLIENTS:
            got, wall = sl.load(server.url, pool, clients, requests, max_s)
            key = cell(clients, lesions)
            cells[key] = {"clients": clients, "lesions": lesions, **sl.summary(got, wall)}
            every += got
            print(f"load {key}: {cells[key]}", flush=True)
    return cells, every


def slow_client(server: sl.Server, data: Path) -> dict[str, Any]:
    """8 clients for SLOW_S seconds, then again beside a 1 byte/s client."""
    pool = sl.bodies(data, 1)
    clean, wall = sl.load(server.url, pool, 8, 100_000, SLOW_S)
    result: dict[str, Any] = {}
    t = threading.Thread(target=sl.slow_client, args=(server.url, pool[0][0], SLOW_S, result))
    t.start()
    slow, wall_slow = sl.load(server.url, pool, 8, 100_000, SLOW_S)
    t.join()
    a, b = sl.summary(clean, wall), sl.summary(slow, wall_slow)
    return {"clean": a, "with_slow_client": b, "slow_client": result,
            "ratio_p95": round(b["p95_ms"] / a["p95_ms"], 3), "goal_ratio": 1.2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--art", default="artifacts/bench_serve")
    ap.add_argument("--data", default="datasets/synthetic/smoke")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = ap.parse_args()
    os.chdir(ROOT)
    art, data = Path(args.art), Path(args.data)
    art.mkdir(parents=True, exist_ok=True)
    build_log = art / "build.log"
    cores = usable_cores()
    if cores < 2:
        raise SystemExit(f"bench_serve: needs 2 cores (server and load each on one), have {cores}")
    t0 = time.perf_counter()
    chain_dir = chain(art, build_log)
    load_start = os.getloadavg()  # other work on the box moves every figure here
    bundle_dir = bundle(chain_dir, data, art / "bundle", build_log)
    version = json.loads((bundle_dir / "bundle.json").read_text())["version"]
    batch = batch_path(data, chain_dir, art / "batch", build_log)
    print(f"batch path: {batch}", flush=True)
    os.sched_setaffinity(0, {LOAD_CORE})  # the load generator, and the clients it starts
    env = sl.serve_env(secrets.token_hex(16))
    server_log = art / "server.log"
    server_log.write_text("")
    log_path = art / "load" / "predictions.sqlite"
    log_path.parent.mkdir(exist_ok=True)
    log_path.unlink(missing_ok=True)
    server = sl.Server(bundle_dir, log_path, server_log, SERVER_CORE, env)
    try:
        start_s = server.ready()
        cells, every = load_matrix(server, data)
        slow = slow_client(server, data)
    finally:
        server.stop()
    print(f"slow client: p95 ratio {slow['ratio_p95']}", flush=True)
    check = sl.once_each(every, sl.logged(log_path))
    faults = {"sigkill": sigkill(bundle_dir, art, data, env, SERVER_CORE),
              "read_only": read_only(bundle_dir, art, env, SERVER_CORE),
              "full_disk": full_disk(bundle_dir, art, env, SERVER_CORE)}
    print(f"faults: {json.dumps(faults)}", flush=True)
    result = {
        "what": MEANING, "data": rel(data), "chain": rel(chain_dir), "bundle": rel(bundle_dir),
        "bundle_version": version, "server_core": SERVER_CORE, "load_core": LOAD_CORE,
        "server_start_s": start_s, "bounds": {f"l{k}": {"max_requests": r, "max_seconds": s}
                                              for k, (r, s) in SIZES.items()},
        "conditions": {**run_conditions(1, stage="serve"), "cpu_count": cores,
                       "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "batch_path": batch, "load": cells, "log_check": check,
        "errors": sum(c["errors"] for c in cells.values()),
        "ratio_8_clients": {f"l{n}": round(cells[cell(8, n)]["lesions_per_s"]
                                           / batch["lesions_per_s"], 3) for n in SIZES},
        "goal_ratio": 0.5, "faults": faults, "slow_client": slow,
        "seconds": round(time.perf_counter() - t0, 1)}
    write_json(result, args.out)
    print(json.dumps({k: result[k] for k in ("ratio_8_clients", "errors", "log_check")}))


if __name__ == "__main__":
    main()
