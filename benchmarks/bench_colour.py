"""Shades-of-Gray colour constancy on vs off: real-dev image-only 5-fold CV over fold seeds.

Issue 11 asks whether the colour-constancy step that people use to mix ISIC sources helps on
the ISIC 2024 crops. Each (setting, fold seed) is one ``bench_vision.py --real-dev`` run (the
``real_dev`` profile, random init, CPU) written to ``benchmarks/results/real_dev_runs/`` and
skipped when already there (``--force`` reruns); the seed sets both the patient-grouped folds
and the initialisation, so "on" and "off" of one seed see the same folds. The summary — OOF
pAUC per run, the paired difference (on - off) per seed, its mean and sd — goes to
``benchmarks/results/colour_constancy.json``.

    python benchmarks/bench_colour.py [--seeds 42 43] [--jobs 2] [key=value ...]

``--jobs 2`` runs two CV runs side by side with one torch thread each (on a 2-core box that
trains ~1.2x more per hour than one run with two threads; the run times are then not the
single-run figures of ``vision_real_dev.json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from isicstack.data.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "real_dev_runs"
SHARED_IMAGES = ROOT.parent / "shared" / "real-dev" / "images" / "train-image.hdf5"


def run_path(cc: bool, seed: int) -> Path:
    return RUNS / f"cc{int(cc)}_seed{seed}.json"


def cv_run(cc: bool, seed: int, threads: int, extra: list[str]) -> dict[str, Any]:
    """One real-dev CV run through bench_vision.py (own artifacts folder: nothing reused)."""
    out = run_path(cc, seed)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_vision.py"), "--real-dev",
           "--out", str(out), f"color_constancy={str(cc).lower()}", f"seed={seed}",
           f"artifacts=artifacts/bench_colour/cc{int(cc)}_seed{seed}", *extra]
    if threads:
        cmd.append(f"cpu_threads={threads}")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode})")
    return json.loads(out.read_text())


def summarise(runs: dict[tuple[bool, int], dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Per-run scores and the paired on-minus-off differences over the seeds run both ways."""
    rows = {f"cc{int(cc)}_seed{s}": {
        "color_constancy": cc, "seed": s, "oof_pauc": r["oof_pauc"], "oof_auc": r["oof_auc"],
        "mean_fold_pauc": r["mean_fold_pauc"], "seconds": r["seconds"],
        "tta_flip": r["config"].get("tta_flip"), "steps": r["config"]["steps"]}
        for (cc, s), r in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0]))}
    paired = [s for s in seeds if (True, s) in runs and (False, s) in runs]

    def stat(key: str, cc: bool | None) -> dict[str, float | None]:
        if cc is None:
            vals = np.array([runs[True, s][key] - runs[False, s][key] for s in paired])
        else:
            vals = np.array([runs[cc, s][key] for s in paired])
        return {"mean": float(vals.mean()) if len(vals) else None,
                "sd": float(vals.std(ddof=1)) if len(vals) > 1 else None}

    return {"seeds": paired, "runs": rows,
            "off": {k: stat(k, False) for k in ("oof_pauc", "mean_fold_pauc")},
            "on": {k: stat(k, True) for k in ("oof_pauc", "mean_fold_pauc")},
            "difference": {k: stat(k, None) for k in ("oof_pauc", "mean_fold_pauc")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    ap.add_argument("--jobs", type=int, default=1, help="CV runs side by side")
    ap.add_argument("--force", action="store_true", help="rerun runs already in real_dev_runs/")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="more image settings")
    args = ap.parse_args(argv)
    if not SHARED_IMAGES.is_file():
        print(f"skip bench_colour: {SHARED_IMAGES} not found (the real-dev crops)")
        return 0
    todo = [(cc, s) for s in args.seeds for cc in (False, True)
            if args.force or not run_path(cc, s).is_file()]
    threads = 1 if args.jobs > 1 else 0
    RUNS.mkdir(parents=True, exist_ok=True)

    def one(job: tuple[bool, int]) -> None:
        res = cv_run(*job, threads, args.overrides)
        print(f"  colour constancy {'on' if job[0] else 'off'}, seed {job[1]}: OOF pAUC "
              f"{res['oof_pauc']:.4f}", flush=True)

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, todo))
    runs = {(cc, s): json.loads(run_path(cc, s).read_text())
            for s in args.seeds for cc in (False, True) if run_path(cc, s).is_file()}
    out = summarise(runs, args.seeds)
    write_json(out, RESULTS / "colour_constancy.json")
    print(json.dumps(out["difference"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
