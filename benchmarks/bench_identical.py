"""Did the redesign change any output? `make all` of two commits, compared file by file.

Each commit is cloned fresh (``git clone``, ``make setup``: its own venv at the locked versions,
its own synthetic data) and runs ``make all`` on one core of its own (``taskset``, so every
stage runs one thread: the image runs are then repeatable), both at once. Then every prediction
file either wrote (``artifacts/**/*.parquet`` and ``*.csv``: OOF and test scores of every model,
the stack, calibration, ``submission.csv``) is compared byte for byte, and frame by frame where
the bytes differ; the synthetic data the two generated is compared too (it must be the same for
the comparison to mean anything). Metrics and reports are left out: they hold timings.

    python benchmarks/bench_identical.py --before 3da1b5a --after HEAD [--profile default]
    python benchmarks/bench_identical.py --before-clone DIR --after HEAD

``--before-clone``: a clone of the earlier commit that already ran ``make setup`` and ``make
all`` the same way (pinned to one core, ``ISIC_TRACKING=none``), with its timings in
``DIR/../<name>.json`` (``commit``, ``setup_seconds``, ``make_all_seconds``): the two runs then
happen one after the other instead of side by side, each on one core.

Writes ``benchmarks/results/identical.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import fresh_clone, run_logged  # noqa: E402

from isicstack.conditions import run_conditions  # noqa: E402
from isicstack.data.io import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"cache", "report", "mlartifacts"}  # decoded-crop caches, figures, the ledger's copies


def clone_and_run(rev: str, core: int, profile: str, tmp: Path, out: dict[str, Any]) -> None:
    """A fresh clone at ``rev`` runs ``make setup`` and ``make all`` pinned to ``core``."""
    clone = tmp / rev
    commit = fresh_clone(rev, clone, ROOT)
    env = {**os.environ, "ISIC_TRACKING": "none"}
    pin = ["taskset", "-c", str(core)]
    log = tmp / f"{rev}.log"
    setup = run_logged([*pin, "make", "--no-print-directory", "setup"], log, clone, env, True)
    run = run_logged([*pin, "make", "--no-print-directory", "all", f"PROFILE={profile}"], log,
                     clone, env, True)
    out[rev] = {"commit": commit, "clone": clone, "setup_seconds": setup["seconds"],
                "make_all_seconds": run["seconds"]}


def outputs(clone: Path) -> dict[str, Path]:
    """Every prediction file under the clone's artifacts, by relative path."""
    art = clone / "artifacts"
    return {str(p.relative_to(art)): p for p in sorted(art.rglob("*"))
            if p.suffix in (".parquet", ".csv") and not SKIP & set(p.relative_to(art).parts)}


def data_hash(clone: Path, profile: str) -> str:
    """Digest of the synthetic set the clone generated (wherever its code keeps it)."""
    found = [p for p in (clone / "datasets" / "synthetic" / profile,
                         clone / "data" / "synthetic" / profile) if p.is_dir()]
    digest = hashlib.sha256()
    for f in sorted(found[0].iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Byte equality, else whether the frames are equal and the largest float difference."""
    if a.read_bytes() == b.read_bytes():
        return {"identical": True}
    if a.suffix != ".parquet":
        return {"identical": False}
    fa, fb = pl.read_parquet(a), pl.read_parquet(b)
    diff = {c: float((fa[c] - fb[c]).abs().max()) for c in fa.columns
            if c in fb.columns and fa[c].dtype.is_float() and fa.height == fb.height}
    return {"identical": False, "frame_equal": fa.equals(fb), "max_abs_diff": diff}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="3da1b5a", help="commit before the redesign (issue 28)")
    ap.add_argument("--before-clone", type=Path, default=None,
                    help="a clone of --before that already ran make all (see the docstring)")
    ap.add_argument("--after", default="HEAD")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                    "identical.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="identical_"))
    runs: dict[str, Any] = {}
    revs = (args.before, args.after)
    if args.before_clone is not None:
        done = args.before_clone
        record = json.loads((done.parent / f"{done.name}.json").read_text(encoding="utf-8"))
        args.before = revs[0] if record["commit"].startswith(revs[0]) else record["commit"]
        runs[args.before] = {**record, "clone": done,
                             "run": "earlier (--before-clone), not side by side"}
        revs = (args.after,)
    threads = [threading.Thread(target=clone_and_run, args=(rev, core, args.profile, tmp, runs))
               for core, rev in enumerate(revs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if set(runs) != {args.before, args.after}:
        raise SystemExit(f"a run failed; logs in {tmp}")
    before, after = runs[args.before]["clone"], runs[args.after]["clone"]
    old, new = outputs(before), outputs(after)
    files = {name: compare(old[name], new[name]) for name in sorted(set(old) & set(new))}
    result = {
        "profile": args.profile, "threads": 1,
        "before": {k: v for k, v in runs[args.before].items() if k != "clone"},
        "after": {k: v for k, v in runs[args.after].items() if k != "clone"},
        "same_data": data_hash(before, args.profile) == data_hash(after, args.profile),
        "files_compared": len(files),
        "identical": sum(f["identical"] for f in files.values()),
        "differing": {k: v for k, v in files.items() if not v["identical"]},
        "only_before": sorted(set(old) - set(new)), "only_after": sorted(set(new) - set(old)),
        "conditions": run_conditions(1, stage="make all"),
    }
    write_json(result, args.out)
    print(f"{result['identical']} of {result['files_compared']} files identical; same data: "
          f"{result['same_data']}; wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
