"""Every command ``make bench`` runs, in order, and the results file each one writes.

One list, so that every table of BENCHMARKS.md can be regenerated from a fresh clone:
``tests/test_benchmarks.py`` checks that each table's results file (``render.TABLES``) is
written by a command here, with the same script. Order matters where a script reads another's
output: ``bench_quality``, ``bench_fusion`` and ``bench_ceiling`` read ``bench_pipeline``'s
chains (``artifacts/bench_pipeline/seed<N>``). The whole plan takes hours on a 2-core CPU;
``--only`` runs the commands whose results file or script matches a substring.

Usage::

    python benchmarks/plan.py                      # everything, in order
    python benchmarks/plan.py --list               # print the plan
    python benchmarks/plan.py --only tabular ceiling
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"

# (results file in benchmarks/results, command after `python`)
PLAN: list[tuple[str, str]] = [
    ("data.json", "benchmarks/bench_data.py"),
    ("synth.json", "benchmarks/bench_synth.py"),
    ("features.json", "benchmarks/bench_features.py"),
    ("tabular.json", "benchmarks/bench_tabular.py"),
    ("tune.json", "benchmarks/bench_tune.py"),
    ("inference.json", "benchmarks/bench_inference.py"),
    ("vision_cpu.json", "benchmarks/bench_vision.py"),
    ("loader.json", "benchmarks/bench_loader.py"),
    ("real_dev_settings.json", "benchmarks/bench_settings.py --seeds 42 43 44"),
    ("pipeline.json", "benchmarks/bench_pipeline.py --seeds 0 1 2"),
    ("quality.json", "benchmarks/bench_quality.py"),
    ("fusion.json", "benchmarks/bench_fusion.py"),
    ("ceiling.json", "benchmarks/bench_ceiling.py"),
    ("tracking.json", "benchmarks/bench_tracking.py"),
    ("fullsize.json", "benchmarks/bench_fullsize.py"),
    ("makeall.json", "benchmarks/bench_makeall.py"),
    ("float32.json", "benchmarks/bench_float32.py"),
    ("maketest.json", "benchmarks/bench_maketest.py"),
    ("identical.json", "benchmarks/bench_identical.py --before 3da1b5a --after HEAD"),
    ("calibration.json", "benchmarks/bench_calibration.py --seeds 0 1 2"),
    ("single_lesion.json", "benchmarks/bench_single_lesion.py"),
    ("solo.json", "benchmarks/bench_solo.py"),
    ("replay.json", "benchmarks/bench_replay.py"),
    ("serve.json", "benchmarks/bench_serve.py"),
]


def script_of(command: str) -> str:
    """The ``benchmarks/bench_*.py`` a command runs."""
    return next(w for w in shlex.split(command) if w.endswith(".py"))


def selected(only: list[str]) -> list[tuple[str, str]]:
    """The plan's entries whose results file or command contains one of ``only`` (all if empty)."""
    return [(f, c) for f, c in PLAN if not only or any(o in f or o in c for o in only)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    ap.add_argument("--only", nargs="+", default=[], metavar="SUBSTRING")
    args = ap.parse_args()
    todo = selected(args.only)
    if not todo:
        print(f"no plan entry matches {args.only}; see --list", file=sys.stderr)
        return 2
    for results, command in todo:
        if args.list:
            print(f"{results:32s} python {command}")
            continue
        print(f"== python {command}  (-> {RESULTS}/{results})", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, *shlex.split(command)], cwd=ROOT)
        if done.returncode:
            print(f"make bench: `python {command}` failed ({done.returncode}); the commands "
                  "after it did not run", file=sys.stderr)
            return done.returncode
        print(f"== {script_of(command)}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
