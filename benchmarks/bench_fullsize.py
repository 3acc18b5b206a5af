"""The run users will do, at full size on a CPU: `make all` on 401,059 rows + crops, then the
offline predict path on a 100,000-row test set with crops; wall time and peak RSS per stage.

It tests I/O and memory, not learning: the ``full_cpu`` profile (configs/*.yaml) keeps the
``full`` profile's data path (stream mode, a DataLoader worker, lazy per-worker HDF5 handles,
the full GBDT recipe) with a network and size a 2-core CPU can score (resnet18 at 64 px, 30
steps per fold), on the synthetic ``full_cpu`` set (401,059 train rows, 1,042 patients, 0.098 %
positives, 100,000 test rows, 64 px crops).

Resumable: each finished stage is recorded in ``--out`` (with its wall time and peak RSS) and
skipped on the next call; an interrupted image stage resumes its own folds (``resume``). So
after a session ends, the same command goes on where it stopped:

    nohup python benchmarks/bench_fullsize.py > fullsize.log 2>&1 &

Peak RSS is the largest resident set of any process of the stage (``getrusage`` of a wrapper
process's children: make, the stage, its loader workers). Writes
``benchmarks/results/fullsize.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import run_logged  # noqa: E402

from isicstack.conditions import run_conditions  # noqa: E402
from isicstack.data.io import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "full_cpu"
ART = "artifacts/fullsize"  # relative to ROOT: no machine path in the results
DATA = f"datasets/synthetic/{PROFILE}"
TARGET_ROWS = 500_000
MAKE = ["make", "--no-print-directory", f"PROFILE={PROFILE}", f"ARTIFACTS={ART}"]
STAGES: list[tuple[str, list[str]]] = [
    ("synth", [*MAKE, "synth"]),
    *((t, [*MAKE, t]) for t in ("folds", "train-tabular", "train-image-only", "train-image",
                                "train-tabular-image", "stack", "calibrate", "report")),
    ("predict", [sys.executable, "-m", "isicstack.pipelines.cli", "predict", "--profile",
                 PROFILE, f"data_dir={DATA}", f"artifacts={ART}",
                 f"out={ART}/predict/submission.csv"]),
    ("kaggle-package", [*MAKE, "kaggle-package"]),
]


def run_stage(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` (output to ``log``): wall time and the peak RSS of its process tree."""
    return run_logged(cmd, log, ROOT, rss=True)


def projection(result: dict[str, Any]) -> dict[str, Any]:
    """The predict stage's time scaled linearly to 500,000 test rows (rows are streamed in
    patient batches, so time grows with rows and memory should not)."""
    pred = result["stages"].get("predict")
    meta = ROOT / DATA / "test-metadata.csv"
    if not pred or not meta.is_file():
        return {"test_rows": None, "seconds_500k": None}
    rows = sum(1 for _ in meta.open()) - 1
    return {"test_rows": rows, "seconds_500k": round(pred["seconds"] * TARGET_ROWS / rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fullsize.json")
    ap.add_argument("--force", nargs="*", default=[], help="rerun these stages")
    ap.add_argument("--only", nargs="*", default=[], help="run only these stages")
    args = ap.parse_args()
    os.environ.setdefault("ISIC_TRACKING", "none")  # measure the pipeline, not the ledger
    result = json.loads(args.out.read_text()) if args.out.is_file() else {"stages": {}}
    result.update(profile=PROFILE, what="I/O and memory at full size, not learning "
                  "(30 steps per fold)", conditions=run_conditions(1, 1))
    logs = ROOT / ART / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name, cmd in STAGES:
        if (args.only and name not in args.only) or (
                name in result["stages"] and name not in args.force):
            continue
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        if name in result["stages"]:  # a rerun (--force): the earlier record is kept beside it
            result.setdefault("previous", {})[name] = result["stages"][name]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
        result["stages"][name] = {**run_stage(cmd, logs / f"{name}.log"), "commit": commit}
        result["total_seconds"] = round(sum(s["seconds"] for s in result["stages"].values()))
        result["max_peak_rss_mib"] = max(s["peak_rss_mib"] for s in result["stages"].values())
        result["projection"] = projection(result)
        write_json(result, args.out)  # after every stage: an interruption loses nothing
        print(f"   {result['stages'][name]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
