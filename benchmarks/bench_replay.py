"""Replay with planted shifts (issue 29): does ``isic monitor`` flag each planted shift within 2
windows, with at most 1 false alarm in 20 clean windows, on a stream sent through the running
service?

A smoke-profile chain in its own folder (``make all PROFILE=smoke ARTIFACTS=<chain>``; reused
when present), its bundle (``isic bundle``), ``isic serve`` started as a subprocess on a free
loopback port with a fresh prediction log, ``isic replay`` (new patients, another generator
seed; >= 20 clean windows, then a new centre, ages +5, a colour cast and doubled prevalence, each
for ``shift_windows`` windows, clean between; outcomes for flagged lesions + a 5 % audit), the
server stopped, then ``isic monitor window=<window>`` on the log with the monitor's defaults
(``--monitor-args`` adds keys). Per shift: windows until the first alert (any, and one naming
the shifted input: ``RELEVANT``); false alarms: clean windows with any alert. Writes
``benchmarks/results/replay.json``.

    python benchmarks/bench_replay.py [--chain artifacts/bench_replay] [--window 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import run_logged  # noqa: E402

from isicstack.conditions import run_conditions  # noqa: E402
from isicstack.data.io import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ISIC = [sys.executable, "-m", "isicstack.pipelines.cli"]
# an alert "names" a shift when its family:name contains one of these
RELEVANT = {"centre": ("attribution",), "age": ("age_approx",),
            "colour": ("mean_r", "mean_g", "mean_b", "brightness"),
            "prevalence": ("calibration",)}
GOAL_DELAY, GOAL_FALSE = 2, 1  # flagged within 2 windows; <= 1 false alarm per 20 clean
# other alarm rules tried on the same log (monitor keys; cheap: the log is read again, no replay)
VARIANTS = {"fixed_floor": "psi_noise=0",  # PSI floor 0.1 alone, the first defaults
            "psi_floor_025": "psi_floor=0.25",
            "strict": "psi_floor=0.5 range_floor=0.03 alpha=0.01",
            "no_cluster": "cluster=false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chain(folder: Path, profile: str, log: Path) -> dict[str, Any]:
    """The smoke chain (trained unless its stack and calibration maps are there)."""
    if (folder / "runs" / "stack").is_dir() and (folder / "calibration").is_dir():
        return {"reused": True}
    env = {**os.environ, "PROFILE": profile}
    timed = run_logged(["make", "--no-print-directory", "all", f"PROFILE={profile}",
                        f"ARTIFACTS={folder.relative_to(ROOT)}"], log, ROOT, env, append=True)
    return {"reused": False, **timed}


def wait_ready(url: str, proc: subprocess.Popen, log: Path, limit_s: float = 180) -> float:
    """Seconds until ``/readyz`` answers 200 (the server's log tail on failure)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if proc.poll() is not None:
            raise SystemExit(f"isic serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return round(time.perf_counter() - t0, 1)
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"isic serve not ready after {limit_s:g} s; log {log}")


def relevant(shift: str, alert: dict[str, Any]) -> bool:
    key = f"{alert.get('family')}:{alert.get('name')}"
    return any(k in key for k in RELEVANT.get(shift, ()))


def when(k: int | None, of: int) -> str:
    """``window 1 of 3`` or ``not in 3 windows`` (for the page)."""
    return f"window {k} of {of}" if k is not None else f"not in {of} windows"


def figures(manifest: dict[str, Any], monitor: dict[str, Any]) -> dict[str, Any]:
    """Windows until flagged per shift, false alarms on the clean windows."""
    alerts: dict[int, list[dict[str, Any]]] = {}
    for a in monitor.get("alerts", []):
        alerts.setdefault(int(a["window"]), []).append(a)
    plan = manifest["layout"]
    lead = next((i for i, s in enumerate(plan) if s != "clean"), len(plan))
    clean = list(range(lead))
    gaps = [i for i, s in enumerate(plan) if s == "clean" and i >= lead]
    shifts: dict[str, Any] = {}
    for shift in dict.fromkeys(s for s in plan if s != "clean"):
        seg = [i for i, s in enumerate(plan) if s == shift]
        any_hit = next((k + 1 for k, i in enumerate(seg) if alerts.get(i)), None)
        named = next((k + 1 for k, i in enumerate(seg)
                      if any(relevant(shift, a) for a in alerts.get(i, []))), None)
        shifts[shift] = {"windows": seg, "windows_to_alert": any_hit,
                         "windows_to_named_alert": named,
                         "named_text": when(named, len(seg)), "any_text": when(any_hit, len(seg)),
                         "met": named is not None and named <= GOAL_DELAY,
                         "alerts": {i: sorted({f"{a['family']}:{a['name']}"
                                               for a in alerts.get(i, [])}) for i in seg}}
    false = [i for i in clean if alerts.get(i)]
    return {"clean_windows": len(clean), "false_alarms": len(false),
            "false_alarms_all_clean": f"{len(false) + sum(bool(alerts.get(i)) for i in gaps)} "
                                      f"of {len(clean) + len(gaps)}",
            "false_alarm_windows": {i: sorted({f"{a['family']}:{a['name']}" for a in alerts[i]})
                                    for i in false},
            "false_alarm_goal_met": len(false) * 20 <= GOAL_FALSE * max(len(clean), 1),
            "gap_windows_alarmed": [i for i in gaps if alerts.get(i)],
            "shifts": shifts,
            "monitored_windows": len(monitor.get("windows", []))}


def serve_and_replay(args: argparse.Namespace, bundle: Path, db: Path, env: dict[str, str],
                     run_dir: Path, log: Path) -> dict[str, float]:
    """``isic serve`` on a free loopback port with a fresh log, ``isic replay`` through it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [*ISIC, "serve", "--profile", args.profile, f"bundle={bundle.relative_to(ROOT)}",
             f"port={port}", f"log={db.relative_to(ROOT)}", "max_lesions=2000",
             "batch_lesions=1024", "timeout_s=600"]
    out: dict[str, float] = {}
    with (run_dir / "serve.log").open("w") as fh:
        proc = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        out["serve_ready"] = wait_ready(url, proc, run_dir / "serve.log")
        replay = [*ISIC, "replay", "--profile", args.profile, f"url={url}",
                  f"log={db.relative_to(ROOT)}", f"window={args.window}",
                  f"clients={args.clients}", *shlex.split(args.replay_args)]
        out["replay"] = run_logged(replay, log, ROOT, env, append=True)["seconds"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return out


def monitor(args: argparse.Namespace, db: Path, bundle: Path, out: Path, extra: str,
            env: dict[str, str], log: Path) -> tuple[int, dict[str, Any], float]:
    """``isic monitor`` on the log (exit 0, or 3 with alerts); its monitor.json and seconds."""
    cmd = [*ISIC, "monitor", "--profile", args.profile, f"log={db.relative_to(ROOT)}",
           f"bundle={bundle.relative_to(ROOT)}", f"window={args.window}",
           f"out={out.relative_to(ROOT)}", f"artifacts={args.chain}", *shlex.split(extra)]
    t = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"== {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT
                            ).returncode
    if rc not in (0, 3):  # 3: alerts (expected: the shifts are planted)
        raise SystemExit(f"isic monitor failed ({rc}); log {log}")
    return rc, json.loads((out / "monitor.json").read_text()), round(time.perf_counter() - t, 1)


def short(f: dict[str, Any]) -> dict[str, Any]:
    """A variant's figures in one line each."""
    return {"false_alarms": f"{f['false_alarms']} of {f['clean_windows']}",
            "false_alarms_all_clean": f["false_alarms_all_clean"],
            **{s: {"named": v["windows_to_named_alert"], "any": v["windows_to_alert"],
                   "named_text": v["named_text"], "any_text": v["any_text"]}
               for s, v in f["shifts"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chain", default="artifacts/bench_replay")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--replay-args", default="", help="more isic replay key=value")
    ap.add_argument("--monitor-args", default="", help="more isic monitor key=value")
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "ARGS"),
                    help="another monitor key=value set tried on the same log (default: "
                    "VARIANTS)")
    ap.add_argument("--reuse", action="store_true",
                    help="monitor the log and manifest of the last run again (no replay)")
    ap.add_argument("--out", default="benchmarks/results/replay.json")
    args = ap.parse_args()
    os.chdir(ROOT)
    t_all = time.perf_counter()
    folder = ROOT / args.chain
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "bench_replay.log"
    log.write_text("")
    prof = ["--profile", args.profile]
    seconds: dict[str, Any] = {"chain": chain(folder, args.profile, log)}
    bundle, run_dir = folder / "bundle", folder / "replay"
    if not (args.reuse and (bundle / "bundle.json").is_file()):
        seconds["bundle"] = run_logged([*ISIC, "bundle", *prof, f"artifacts={args.chain}",
                                        f"out_dir={bundle.relative_to(ROOT)}"], log, ROOT,
                                       append=True)["seconds"]
    run_dir.mkdir(exist_ok=True)
    db = run_dir / "predictions.db"
    env = {**os.environ, "ISIC_LOG_KEY": os.environ.get("ISIC_LOG_KEY", "bench-replay-key")}
    if not args.reuse:
        for old in run_dir.glob("predictions.*"):
            old.unlink()
        seconds.update(serve_and_replay(args, bundle, db, env, run_dir, log))
    manifest = json.loads((run_dir / "predictions.replay.json").read_text())
    rc, mon, seconds["monitor"] = monitor(args, db, bundle, run_dir / "monitor",
                                          args.monitor_args, env, log)
    variants = {}
    for name, extra in (args.variant or list(VARIANTS.items())):
        _, other, _ = monitor(args, db, bundle, run_dir / "variant", f"{args.monitor_args} "
                              f"{extra}", env, log)
        variants[name] = {"monitor_args": extra, **short(figures(manifest, other))}
    result = {
        "profile": args.profile, "chain": args.chain, "window": args.window,
        "clients": args.clients, "model_version": manifest.get("model_version"),
        "replay": {k: manifest[k] for k in ("seed", "training_seed", "synth_profile", "layout",
                                            "audit", "seconds")},
        "replay_args": args.replay_args, "monitor_args": args.monitor_args,
        "monitor_exit": rc, "lesions": sum(w["lesions"] for w in manifest["windows"]),
        "windows": [{k: w.get(k) for k in ("window", "shift", "lesions", "patients",
                                           "positives", "flagged", "biopsy", "audit",
                                           "centre_share", "cast_crops", "scored_seconds")}
                    for w in manifest["windows"]],
        **figures(manifest, mon),
        "variants": variants,
        "goals": {"windows_to_flag": GOAL_DELAY, "false_alarms_per_20_clean": GOAL_FALSE},
        "reused_log": args.reuse,  # True: the log of an earlier replay, monitored again
        "seconds": {"replay": manifest.get("seconds"), **seconds,
                    "total": round(time.perf_counter() - t_all, 1)},
        "conditions": run_conditions(threads=os.cpu_count() or 1, stage="replay"),
    }
    write_json(result, ROOT / args.out)
    shown = (ROOT / args.out).with_suffix("")  # the monitor's own report, shown by the README
    shown.mkdir(exist_ok=True)
    for name in ("report.md", "monitor.png"):
        shutil.copy2(run_dir / "monitor" / name, shown / name)
    print(json.dumps({k: result[k] for k in ("false_alarms", "clean_windows")}
                     | {s: v["windows_to_named_alert"] for s, v in result["shifts"].items()}))


if __name__ == "__main__":
    main()
