"""Image settings on vs off on the real-dev crops, paired over fold seeds: colour constancy, EMA.

Each (setting, fold seed) is one ``bench_vision.py --real-dev`` run (the ``real_dev`` profile:
image-only 5-fold CV, resnet18 64 px, random init, CPU) into its own artifacts folder
``artifacts/bench_settings/<setting>_seed<N>`` (kept: ``isic compare`` reads it) and a results
file ``benchmarks/results/real_dev_runs/<setting>_seed<N>.json``; runs already there are
skipped (``--force`` reruns). A fold seed fixes the patient-grouped folds and the
initialisation, so every setting of one seed sees the same folds. Every run of one call is made
with the same torch threads on the same box, and each records its conditions; the comparison of
a setting with ``off`` is ``isic compare`` (corrected repeated-CV t-test over the seeds' folds
and a patient bootstrap), which refuses runs whose conditions differ.

    python benchmarks/bench_settings.py [--seeds 42 43 44] [--settings off colour ema]
                                        [--threads 1] [--jobs 1] [--force]

``--jobs 2`` runs two CV runs side by side (1 torch thread each). Writes
``benchmarks/results/real_dev_settings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from isicstack.data.io import write_json
from isicstack.data.metric import seed_spread
from isicstack.evaluation.compared_runs import load_stage_run
from isicstack.evaluation.evaluate import compare
from isicstack.evaluation.paired import pauc_interval
from isicstack.settings.keys import move
from isicstack.vision.config import ImageConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "real_dev_runs"
SHARED_IMAGES = ROOT.parent / "shared" / "real-dev" / "images" / "train-image.hdf5"
ART = "artifacts/bench_settings"  # relative to ROOT: no machine path in the results
RUN_NAME = "vision_resnet18"  # the real_dev profile's output name
BASELINE = "off"
SETTINGS: dict[str, list[str]] = {
    "off": [],
    "colour": ["data.color_constancy=true"],        # Shades of Gray, p = 6
    "ema": ["optim.ema_decay=0.98", "optim.ema_start=0.5"],  # score an EMA of the weights
}
MEANING = {"off": "the real_dev profile", "colour": "Shades of Gray colour constancy (p = 6)",
           "ema": "EMA of the weights (decay 0.98, from half of the steps)"}


def run_key(setting: str, seed: int) -> str:
    """One name per (setting, seed): the run's results file and its artifacts folder."""
    return f"{setting}_seed{seed}"


def cv_run(setting: str, seed: int, threads: int, extra: list[str]) -> dict[str, Any]:
    """One real-dev CV run through bench_vision.py (own artifacts folder: nothing reused)."""
    out = RUNS / f"{run_key(setting, seed)}.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_vision.py"), "--real-dev",
           "--out", str(out), *SETTINGS[setting], f"seed={seed}",
           f"runtime.cpu_threads={threads}", f"artifacts={ART}/{run_key(setting, seed)}", *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode})")
    return json.loads(out.read_text())


def summarise(seeds: list[int], settings: list[str], n_boot: int) -> dict[str, Any]:
    """Per-run scores, each setting's repeated-CV mean, and ``isic compare`` of each with off."""
    runs = {}
    for setting in settings:
        for seed in seeds:
            path = RUNS / f"{run_key(setting, seed)}.json"
            if path.is_file():
                r = json.loads(path.read_text())
                # runs recorded before the image config's keys were grouped hold flat keys:
                # read alike, quietly (a results file is a record, never rewritten)
                config = move(r["config"], ImageConfig.MOVED_KEYS, str(path))[0]
                runs[run_key(setting, seed)] = {
                    "setting": setting, "seed": seed, "oof_pauc": r["oof_pauc"],
                    "oof_auc": r["oof_auc"], "mean_fold_pauc": r["mean_fold_pauc"],
                    "seconds": r["seconds"], "threads": config["runtime"]["cpu_threads"]}
    scored = {key: load_stage_run(Path(ART) / key, RUN_NAME) for key in runs}
    for key, r in runs.items():  # each run's pooled OOF pAUC with its patient-bootstrap CI
        r["oof_pauc_ci"] = pauc_interval([scored[key]], n_boot)["ci"]
    out: dict[str, Any] = {"seeds": seeds, "runs": runs, "settings": {}, "comparisons": {}}
    for setting in settings:
        mine = [r for r in runs.values() if r["setting"] == setting]
        keys = [run_key(setting, r["seed"]) for r in mine]
        out["settings"][setting] = {
            "meaning": MEANING[setting], "seeds": [r["seed"] for r in mine],
            **{k: seed_spread([r[k] for r in mine]) for k in ("oof_pauc", "mean_fold_pauc")},
            # mean over the seeds of the pooled OOF pAUC, one patient draw for every seed
            "pooled": pauc_interval([scored[k] for k in keys], n_boot) if keys else None}
    base = [s for s in seeds if run_key(BASELINE, s) in runs]
    for setting in settings:
        paired = [s for s in base if run_key(setting, s) in runs]
        if setting == BASELINE or not paired:
            continue
        group = "{" + ",".join(str(s) for s in paired) + "}" if len(paired) > 1 else paired[0]
        res = compare(f"{ART}/{BASELINE}_seed{group}:{RUN_NAME}",
                      f"{ART}/{setting}_seed{group}:{RUN_NAME}", n_boot=n_boot)["oof"]
        out["comparisons"][setting] = {"seeds": paired, **res}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every run")
    ap.add_argument("--jobs", type=int, default=1, help="CV runs side by side")
    ap.add_argument("--force", action="store_true", help="rerun runs already in real_dev_runs/")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--summary-only", action="store_true", help="no runs: summarise those kept")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="more image settings")
    args = ap.parse_args(argv)
    if not SHARED_IMAGES.is_file():
        print(f"skip bench_settings: {SHARED_IMAGES} not found (the real-dev crops)")
        return 0
    os.chdir(ROOT)
    todo = [(st, s) for s in args.seeds for st in args.settings
            if args.force or not (RUNS / f"{run_key(st, s)}.json").is_file()]
    RUNS.mkdir(parents=True, exist_ok=True)

    def one(job: tuple[str, int]) -> None:
        res = cv_run(*job, args.threads, args.overrides)
        print(f"  {job[0]}, seed {job[1]}: OOF pAUC {res['oof_pauc']:.4f}", flush=True)

    if not args.summary_only:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(one, todo))
    out = summarise(args.seeds, list(SETTINGS), args.n_boot)
    write_json(out, RESULTS / "real_dev_settings.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
