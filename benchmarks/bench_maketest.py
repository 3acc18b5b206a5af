"""`make test` on a fresh clone, before and after a change: wall time and the tests it runs.

For each revision (``--revs``; default: the commit before the suite ran on pytest-xdist, and
``HEAD``) a fresh clone (``git clone``: no venv, data or artifacts) runs ``make setup`` (timed:
the install), collects the test ids (``pytest --collect-only -q``) and runs ``make test``
(timed), one revision after the other on ``--cores`` cores (``taskset``). This checkout's
``../shared`` is linked beside each clone, so both revisions read the real fixture files as a
checkout does. Results: ``benchmarks/results/maketest.json``: per revision the
seconds, pytest's summary line and every collected id; and whether the two id lists are equal
(the suite got faster by running the same tests, not fewer).

    python benchmarks/bench_maketest.py                       # af608b3 vs HEAD, 2 cores
    python benchmarks/bench_maketest.py --revs HEAD --cores 2
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import fresh_clone, run_logged  # noqa: E402

from isicstack.conditions import run_conditions  # noqa: E402
from isicstack.data.io import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "maketest.json"
BEFORE = "af608b3"  # the last commit whose `make test` ran the suite in one process
SUMMARY = re.compile(r"=+ (.*(?:passed|failed).*) in ([\d.]+)s")


def collected(clone: Path, env: dict[str, str]) -> list[str]:
    """The test ids pytest collects in ``clone`` (no test runs)."""
    out = subprocess.run([str(clone / ".venv" / "bin" / "pytest"), "--collect-only", "-q",
                          "-p", "no:cacheprovider"], cwd=clone, env=env, capture_output=True,
                         text=True, check=True).stdout
    return sorted(line for line in out.splitlines() if "::" in line)


def one(rev: str, cores: int, keep: bool) -> dict[str, Any]:
    """A fresh clone at ``rev``: install, collect, ``make test``; what each took."""
    tmp = Path(tempfile.mkdtemp(prefix="maketest_"))
    clone = tmp / "isicstack"
    commit = fresh_clone(rev, clone, ROOT)
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # beside the clone, as beside a checkout: ../shared paths resolve
        (tmp / "shared").symlink_to(shared.resolve())
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    pin = ["taskset", "-c", ",".join(str(c) for c in range(cores))]
    log = tmp / "make.log"
    install = run_logged([*pin, "make", "--no-print-directory", "setup"], log, clone, env,
                         append=True)["seconds"]
    ids = collected(clone, env)
    load0 = os.getloadavg()
    t0 = time.perf_counter()  # a failing test is recorded (the summary says so), not fatal
    with log.open("a") as fh:
        done = subprocess.run([*pin, "make", "--no-print-directory", "test"], cwd=clone,
                              env=env, stdout=fh, stderr=subprocess.STDOUT)
    test = round(time.perf_counter() - t0, 1)
    found = SUMMARY.findall(log.read_text())
    out = {"commit": commit, "install_seconds": install, "test_seconds": test,
           "returncode": done.returncode,
           "pytest_summary": found[-1][0] if found else None, "n_ids": len(ids), "ids": ids,
           "loadavg_start": load0, "loadavg_end": os.getloadavg()}
    print(f"  {rev} ({commit}): install {install:.0f}s, make test {test:.0f}s, "
          f"{out['pytest_summary']}", flush=True)
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--revs", nargs="+", default=[BEFORE, "HEAD"])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the clones (for a look)")
    args = ap.parse_args(argv)
    runs = {rev: one(rev, args.cores, args.keep) for rev in args.revs}
    first, *rest = runs.values()
    result = {"cores": args.cores, "revs": args.revs, "runs": runs,
              "same_ids": all(r["ids"] == first["ids"] for r in rest),
              "conditions": run_conditions(threads=args.cores, stage="make test")}
    if len(runs) == 2:
        before, after = runs.values()
        result["speedup"] = round(before["test_seconds"] / after["test_seconds"], 2)
    write_json(result, OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
