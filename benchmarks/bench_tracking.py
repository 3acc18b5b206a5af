"""What MLflow tracking costs: the seconds spent in the tracking calls of each stage run.

Usage::

    python benchmarks/bench_tracking.py [--out benchmarks/results/tracking.json]

Runs ``make all``'s chain on the synthetic smoke profile (3,000 rows, 3 folds) into a temporary
folder, each stage in its own process as ``make`` runs it, with tracking on (the default store,
created by the first tracked stage). Each process reports ``isicstack.ledger.store.COSTS``: the time
inside the tracking calls themselves (MLflow's import, opening or creating the store, creating
the run, params / metrics / tags / artifacts, the image folds' Lightning logger), not a
difference of two noisy end-to-end runs. These calls do not grow with the data (the image
stage's Lightning logger logs once per pass over the balanced subset), so the totals here are
what ``make all`` pays on the default profile too. Writes ``benchmarks/results/tracking.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from isicstack.data.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ("import json, os, sys\n"
          "from isicstack.ledger import store as tracking\n"
          "from isicstack.pipelines.cli import main\n"
          "rc = main(sys.argv[1:])\n"
          "costs = {os.path.basename(k): v for k, v in tracking.COSTS.items()}\n"
          "open(os.environ['BENCH_COSTS'], 'w').write(json.dumps(costs))\n"
          "sys.exit(rc)\n")
# make all's tracked stages, in order (synth and folds are not tracked)
CHAIN: list[tuple[str, list[str]]] = [
    ("tabular", ["train-tabular"]),
    ("image", ["train-image", "fusion=false", "name=imgonly"]),
    ("image", ["train-image", "fusion=true", "name=fused", "tabular_name=lgbm"]),
    ("tabular", ["train-tabular", "features.oof_names=[vision_imgonly,vision_fused_image_part]",
                 "suffix=_img"]),
    ("stack", ["stack"]),
]


def isic(args: list[str], env: dict[str, str], costs: Path) -> tuple[float, dict[str, float]]:
    """Run ``isic <args>`` in a fresh process: its wall seconds and its tracking costs."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT, check=True,
                   env={**env, "BENCH_COSTS": str(costs)}, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    return wall, (json.loads(costs.read_text()) if costs.is_file() else {})


def share_of_make_all(tracking_seconds: float) -> dict:
    """The tracking calls (a fixed cost per stage run, whatever the data size) as a share of
    `make all`'s wall time measured by bench_pipeline.py (issue 21's goal: < 3 %)."""
    path = ROOT / "benchmarks" / "results" / "pipeline.json"
    if not path.is_file():
        return {"make_all_seconds": None, "share_of_make_all": None}
    total = json.loads(path.read_text())["summary"]["total_seconds"]["mean"]
    return {"make_all_seconds": round(total), "share_of_make_all": tracking_seconds / total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tracking.json"))
    ap.add_argument("--share-only", action="store_true",
                    help="no runs: recompute the share of make all from the results files")
    args = ap.parse_args()
    if args.share_only:
        result = json.loads(Path(args.out).read_text())
        write_json({**result, **share_of_make_all(result["total_tracking_seconds"])}, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="bench_tracking_") as tmp:
        data, art = Path(tmp) / "data", Path(tmp) / "artifacts"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ISIC_TRACKING": "auto"}
        env.pop("MLFLOW_TRACKING_URI", None)
        common = ["--profile", "smoke", f"data_dir={data}", f"artifacts={art}"]
        isic(["synth", "--profile", "smoke", f"out={data}"], env, Path(tmp) / "c0.json")
        isic(["folds", *common], env, Path(tmp) / "c1.json")
        runs, stage_seconds = [], 0.0
        for i, (stage, argv) in enumerate(CHAIN):
            wall, costs = isic([argv[0], *common, *argv[1:]], env, Path(tmp) / f"c{i + 2}.json")
            if not costs:
                raise SystemExit(f"{argv[0]}: nothing was tracked (is mlflow installed?)")
            stage_seconds += wall
            for j, (name, seconds) in enumerate(costs.items()):
                runs.append({"stage": stage, "run": name, "process": i + 1,
                             "creates_store": i == 0 and j == 0,
                             "tracking_seconds": round(seconds, 2)})
            print(f"{argv[0]} {' '.join(argv[1:])}: {wall:.1f}s, tracking "
                  f"{sum(costs.values()):.2f}s {costs}", flush=True)
    total = sum(r["tracking_seconds"] for r in runs)
    result = {
        "machine": f"{os.cpu_count()} cores", "profile": "smoke",
        "what": "seconds inside tracking calls (mlflow import, store creation or opening, run, "
                "params, metrics, tags, artifacts, image folds' Lightning logger) per stage run",
        "runs": runs, "processes": len(CHAIN),
        "store_creation_run_seconds": next(r["tracking_seconds"] for r in runs
                                           if r["creates_store"]),
        "total_tracking_seconds": round(total, 2),
        "total_stage_process_seconds": round(stage_seconds, 1),
        **share_of_make_all(total),
    }
    write_json(result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
