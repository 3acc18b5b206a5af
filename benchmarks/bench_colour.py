"""Shades-of-Gray colour constancy on vs off: real-dev image-only 5-fold CV over fold seeds.

Issue 11 asks whether the colour-constancy step that people use to mix ISIC sources helps on
the ISIC 2024 crops. Each (setting, fold seed) is one ``bench_vision.py --real-dev`` run (the
``real_dev`` profile, random init, CPU) written to ``benchmarks/results/real_dev_runs/`` and
skipped when already there (``--force`` reruns); the seed sets both the patient-grouped folds
and the initialisation, so "on" and "off" of one seed see the same folds. The summary — OOF
pAUC per run, the paired difference (on - off) per seed, its mean and sd — goes to
``benchmarks/results/colour_constancy.json``, with each setting's mean ± sd over every seed it
was run with (the "off" runs are the real-dev image-only CV of the ``real_dev`` profile, repeated
over fold seeds).

    python benchmarks/bench_colour.py [--seeds 42 43] [--settings off on] [--jobs 2] [k=v ...]

``--jobs 2`` runs two CV runs side by side with one torch thread each (on a 2-core box that
trains ~1.2x more per hour than one run with two threads; the run times are then not the
single-run figures of ``vision_real_dev.json``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from isicstack.data.io import write_json
from isicstack.data.metric import seed_spread

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "real_dev_runs"
SHARED_IMAGES = ROOT.parent / "shared" / "real-dev" / "images" / "train-image.hdf5"


def run_key(cc: bool, seed: int) -> str:
    """One name per (setting, seed): the run's results file and its artifacts folder."""
    return f"cc{int(cc)}_seed{seed}"


def run_path(cc: bool, seed: int) -> Path:
    return RUNS / f"{run_key(cc, seed)}.json"


def cv_run(cc: bool, seed: int, threads: int, extra: list[str]) -> dict[str, Any]:
    """One real-dev CV run through bench_vision.py (own artifacts folder: nothing reused)."""
    out = run_path(cc, seed)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_vision.py"), "--real-dev",
           "--out", str(out), f"color_constancy={str(cc).lower()}", f"seed={seed}",
           f"artifacts=artifacts/bench_colour/{run_key(cc, seed)}", *extra]
    if threads:
        cmd.append(f"cpu_threads={threads}")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode})")
    return json.loads(out.read_text())


def summarise(runs: dict[tuple[bool, int], dict[str, Any]]) -> dict[str, Any]:
    """Per-run scores and the paired on-minus-off differences over the seeds run both ways."""
    seeds = sorted({s for _, s in runs})
    rows = {run_key(cc, s): {
        "color_constancy": cc, "seed": s, "oof_pauc": r["oof_pauc"], "oof_auc": r["oof_auc"],
        "mean_fold_pauc": r["mean_fold_pauc"], "seconds": r["seconds"],
        "tta_flip": r["config"].get("tta_flip"), "steps": r["config"]["steps"]}
        for (cc, s), r in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0]))}
    paired = [s for s in seeds if (True, s) in runs and (False, s) in runs]

    def stat(key: str, cc: bool | None) -> dict[str, Any]:
        if cc is None:  # paired: on - off within each seed run both ways
            used = paired
            vals = [runs[True, s][key] - runs[False, s][key] for s in used]
        else:  # every seed run with this setting (repeated CV of that setting)
            used = [s for s in seeds if (cc, s) in runs]
            vals = [runs[cc, s][key] for s in used]
        return {**seed_spread(vals), "seeds": used}

    keys = ("oof_pauc", "mean_fold_pauc")
    return {"seeds": paired, "runs": rows, "off": {k: stat(k, False) for k in keys},
            "on": {k: stat(k, True) for k in keys},
            "difference": {k: stat(k, None) for k in keys}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    ap.add_argument("--settings", nargs="+", choices=["off", "on"], default=["off", "on"],
                    help="which settings to run (the summary reads every run kept)")
    ap.add_argument("--jobs", type=int, default=1, help="CV runs side by side")
    ap.add_argument("--force", action="store_true", help="rerun runs already in real_dev_runs/")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="more image settings")
    args = ap.parse_args(argv)
    if not SHARED_IMAGES.is_file():
        print(f"skip bench_colour: {SHARED_IMAGES} not found (the real-dev crops)")
        return 0
    settings = [cc for cc in (False, True) if ("on" if cc else "off") in args.settings]
    todo = [(cc, s) for s in args.seeds for cc in settings
            if args.force or not run_path(cc, s).is_file()]
    threads = 1 if args.jobs > 1 else 0
    RUNS.mkdir(parents=True, exist_ok=True)

    def one(job: tuple[bool, int]) -> None:
        res = cv_run(*job, threads, args.overrides)
        print(f"  colour constancy {'on' if job[0] else 'off'}, seed {job[1]}: OOF pAUC "
              f"{res['oof_pauc']:.4f}", flush=True)

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, todo))
    runs = {}
    for path in sorted(RUNS.glob("cc*_seed*.json")):  # every run kept, not only this call's
        cc, seed = re.fullmatch(r"cc([01])_seed(\d+)", path.stem).groups()
        runs[bool(int(cc)), int(seed)] = json.loads(path.read_text())
    out = summarise(runs)
    write_json(out, RESULTS / "colour_constancy.json")
    print(json.dumps(out["difference"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
