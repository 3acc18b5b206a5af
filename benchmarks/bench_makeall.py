"""`make all` in a quarter hour: where a fresh clone's time goes, and what the cuts cost.

Four parts, each merged into ``benchmarks/results/makeall.json`` (the order ``make bench`` runs
them: quality, reproduce, one_thread, time):

``--part time``: a fresh clone of the committed tree at a recipe's commit (``git clone``, no
``.venv``, no data, no artifacts) runs ``make setup`` and then every ``make all`` target in
order, each timed, on ``--cores`` cores (``taskset``; the stages' default threads then see that
many). The total is what a newcomer waits, install included. ``--recipes``: ``fast`` is the
newest commit (default), ``today`` the commit before the cuts (``RECIPES``), for a before/after
timed in one session on one box. ``--label float32`` stores the run as ``time_float32_<N>core``
(a box without AVX512-BF16, where the CNNs train in float32); a target the commit lacks
(``train-tabular-solo`` before issue 29) is skipped. Each CNN stage's entry under ``cnn`` adds
its training crops/s and, for a float32 run, its achieved FLOP/s over the CPU's GEMM rate
(``bench_float32.py``'s FLOPs per step and GEMM rate on the same box).

``--part quality``: the cut recipe's chains over fold seeds 0-2 beside today's recipe's chains
(``bench_pipeline.py``, ``artifacts/bench_pipeline/seed<N>``), paired by seed with ``isic
compare``. The stages both recipes share (folds, the first GBDT pass, the image-only CNN: same
configs, seeds and threads) are copied from today's chains; the fused CNN, the second GBDT pass,
the stack and the calibration are run anew into ``artifacts/bench_fast/seed<N>``
(``bench_pipeline.py --chains``, its own results in ``artifacts/bench_fast/pipeline.json``), at
1 thread like today's chains.

``--part reproduce``: the cut recipe's fused runs of ``--part quality`` against the same recipe
run by ``bench_fusion.py`` in an earlier session (same seeds, threads, box type): identical
scores show that chains stored from an earlier session are what this code and box produce now,
so pairing today's recipe's stored chains with the cut recipe's new ones pairs like with like.

``--part one_thread``: the stage times of those chains at 1 thread (what one core waits,
install excluded; loaded, so an upper bound).

    python benchmarks/bench_makeall.py                    # every part, the newest commit timed
    python benchmarks/bench_makeall.py --part time --recipes fast
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import fresh_clone, run_logged  # noqa: E402

from isicstack.conditions import run_conditions  # noqa: E402
from isicstack.data.io import write_json  # noqa: E402
from isicstack.ledger.result import METRICS, read_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "makeall.json"
BASE, FAST = "artifacts/bench_pipeline", "artifacts/bench_fast"  # relative to ROOT
TARGETS = ["data", "folds", "train-tabular", "train-image-only", "train-image",
           "train-tabular-image", "train-tabular-solo", "stack", "calibrate", "report"]
# the commit each timed recipe is cloned at: before the cuts, and the newest
RECIPES = {"today": "f826275", "fast": "HEAD"}
PROFILE_KEYS = ("seconds", "features_seconds", "fit_seconds", "crops_seconds", "train_seconds",
                "score_seconds")
SHARED_RUNS = ["lgbm", "xgb", "vision_imgonly"]  # stages both recipes run identically
ONE_THREAD = ["ARGS_train-tabular=threads=1", "ARGS_train-image-only=runtime.cpu_threads=1",
              "ARGS_train-image=runtime.cpu_threads=1", "ARGS_train-tabular-image=threads=1"]


def merge(key: str, value: Any) -> None:
    """Write ``value`` under ``key`` of the results file, keeping the other parts."""
    result = json.loads(OUT.read_text()) if OUT.is_file() else {}
    result[key] = value
    write_json(result, OUT)


def timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    """Run ``cmd`` with its output appended to ``log``; its wall seconds (fails loudly)."""
    return run_logged(cmd, log, cwd, env, append=True)["seconds"]


def part_time(cores: int, recipe: str, make: list[str], keep: bool, rev: str
              ) -> dict[str, Any]:
    """A fresh clone (at commit ``rev``) runs ``make setup`` + every ``make all`` target,
    each timed, on ``cores`` cores."""
    tmp = Path(tempfile.mkdtemp(prefix="makeall_"))
    clone = tmp / "isicstack"
    commit = fresh_clone(rev, clone, ROOT)
    env = dict(os.environ)  # tracking as a user has it: the MLflow store in the clone
    pin = ["taskset", "-c", ",".join(str(c) for c in range(cores))]
    log = tmp / "make.log"
    load0 = os.getloadavg()
    seconds = {"install": timed([*pin, "make", "--no-print-directory", "setup"], clone, env, log)}
    for target in TARGETS:
        if subprocess.run(["make", "-n", target], cwd=clone, capture_output=True).returncode:
            continue  # a target this commit does not have (train-tabular-solo came later)
        seconds[target] = timed([*pin, "make", "--no-print-directory", target, *make],
                                clone, env, log)
        print(f"  {target}: {seconds[target]:.0f}s", flush=True)
    profile, cnn = {}, {}  # inside the stages: features, GBDT fits, crops, training, scoring
    for run in sorted((clone / "artifacts" / "runs").iterdir()):
        if (run / METRICS).is_file():  # either commit's shape: read_result reads both
            r = read_result(run)
            inner = {"seconds": r.seconds, **r.details, **(r.details.get("timings") or {})}
            profile[run.name] = {k: inner.get(k) for k in PROFILE_KEYS}  # None: not that stage
            if inner.get("train_seconds"):  # a CNN stage: its training rate
                cnn[run.name] = {**profile[run.name],
                                 **cnn_rate(run, r.details, inner["train_seconds"], cores)}
    stack = read_result(clone / "artifacts" / "runs" / "stack")
    out = {"cores": cores, "recipe": recipe, "commit": commit, "make": make, "seconds": seconds,
           "total_seconds": round(sum(seconds.values()), 1),
           "minutes": round(sum(seconds.values()) / 60, 1),
           "profile": profile, "cnn": cnn, "stack_oof_pauc": stack.pauc,
           "loadavg_start": load0, "loadavg_end": os.getloadavg(),
           "conditions": run_conditions(threads=cores, stage="make all")}
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def cnn_rate(run: Path, details: dict[str, Any], train_seconds: float, cores: int
             ) -> dict[str, Any]:
    """A CNN stage's training rate: crops/s, and, where ``bench_float32.py`` measured this
    network's FLOPs per step and the CPU's GEMM rate at these threads (``float32.json``, same
    box), its achieved FLOP/s over that GEMM rate (float32 runs only)."""
    import yaml

    batch = int(yaml.safe_load((run / "config.yaml").read_text())["data"]["batch_size"])
    steps = int(details["steps"]) * len(list(run.glob("fold*")))
    out: dict[str, Any] = {"steps": steps, "batch": batch,
                           "train_crops_per_s": round(steps * batch / train_seconds, 1)}
    f32 = OUT.parent / "float32.json"
    if details.get("precision") == "32-true" and f32.is_file():
        native = json.loads(f32.read_text())["native"]
        row = native["rows"].get(f"train/t{cores}/cl0/b{batch}")
        if row and native["model"] == details.get("model_name") and \
                native["image_size"] == details.get("image_size"):
            gflops = steps * row["flops_per_step"] / train_seconds / 1e9
            out.update(achieved_gflop_per_s=round(gflops, 1),
                       gemm_ratio=round(gflops / native["gemm_gflop_per_s"][f"t{cores}"], 3))
    return out


def seed_chain(seed: int) -> Path:
    """``bench_fast/seed<N>`` holding the stages both recipes share, copied from today's chain."""
    src, dst = ROOT / BASE / f"seed{seed}", ROOT / FAST / f"seed{seed}"
    if not (src / "runs" / "vision_imgonly").is_dir():
        raise SystemExit(f"{src}: no image-only run; run benchmarks/bench_pipeline.py first")
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("folds.parquet", "folds.json"):
        shutil.copy2(src / name, dst / name)
    shutil.copytree(src / "cache", dst / "cache", dirs_exist_ok=True)
    for run in SHARED_RUNS:
        shutil.copytree(src / "runs" / run, dst / "runs" / run, dirs_exist_ok=True)
        for kind in ("oof", "test"):
            (dst / kind).mkdir(exist_ok=True)
            if (src / kind / f"{run}.parquet").is_file():
                shutil.copy2(src / kind / f"{run}.parquet", dst / kind / f"{run}.parquet")
    return dst


def part_quality(seeds: list[int]) -> dict[str, Any]:
    """The cut recipe's chains beside today's, paired by seed (``isic compare``)."""
    from isicstack.evaluation.evaluate import compare

    for seed in seeds:
        seed_chain(seed)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_pipeline.py"), "--seeds",
           *map(str, seeds), "--chains", FAST, "--out", str(ROOT / FAST / "pipeline.json"),
           "--stages",
           "train-image", "train-tabular-image", "stack", "calibrate", "--make", *ONE_THREAD]
    subprocess.run(cmd, cwd=ROOT, check=True)
    group = "{" + ",".join(map(str, seeds)) + "}"
    out: dict[str, Any] = {"seeds": seeds}
    for name in ("stack", "vision_fused", "vision_fused_image_part", "lgbm_img", "xgb_img"):
        res = compare(f"{BASE}/seed{group}:{name}", f"{FAST}/seed{group}:{name}", n_boot=1000)
        out[name] = res["oof"]
    fast = json.loads((ROOT / FAST / "pipeline.json").read_text())
    out["fused_seconds"] = fast["summary"]["stages"].get("train-image")
    return out


def part_reproduce(seeds: list[int]) -> dict[str, Any]:
    """The fused runs of the cut recipe made today against the same recipe run in an earlier
    session (``bench_fusion.py``'s ``vision_fromimg``: init from the image-only models, 60
    steps, same seeds and threads): identical scores mean chains of different sessions on
    this box type pair like with like."""
    out: dict[str, Any] = {}
    for seed in seeds:
        today = pl.read_parquet(ROOT / FAST / f"seed{seed}" / "oof" / "vision_fused.parquet")
        earlier = pl.read_parquet(ROOT / "artifacts" / "bench_fusion" / f"seed{seed}" / "oof"
                                  / "vision_fromimg.parquet")
        joined = today.join(earlier, on="isic_id", suffix="_earlier")
        diff = np.abs(joined["pred"].to_numpy() - joined["pred_earlier"].to_numpy())
        out[str(seed)] = {"rows": joined.height, "max_abs_diff": float(diff.max()),
                          "identical": bool(diff.max() == 0.0)}
    out["all_identical"] = all(v["identical"] for v in out.values())
    return out


def part_one_thread() -> dict[str, Any]:
    """``make all``'s stage times at 1 thread, mean over the seeds: the stages both recipes
    share from today's chains, the cut ones from the cut recipe's chains (install excluded;
    the chains ran beside another 1-thread job, so these are upper bounds)."""
    today = json.loads((ROOT / "benchmarks" / "results" / "pipeline.json").read_text())
    fast = json.loads((ROOT / FAST / "pipeline.json").read_text())
    cut = {"train-image", "train-tabular-image", "stack", "calibrate"}
    seconds = {}
    for target in TARGETS:
        stages = (fast if target in cut else today)["summary"]["stages"]
        seconds[target] = (stages.get(target) or {}).get("mean")
    return {"seconds": seconds, "total_seconds": round(sum(v or 0 for v in seconds.values()), 1),
            "missing": [t for t, v in seconds.items() if v is None]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", nargs="+", choices=["quality", "reproduce", "one_thread", "time"],
                    default=["quality", "reproduce", "one_thread", "time"])
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=["fast"],
                    help="the recipes --part time clones and times (today: the commit before "
                         "the cuts, for a before/after in one session)")
    ap.add_argument("--make", nargs="*", default=[], help="make variables for --part time")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keep", action="store_true", help="keep the fresh clone (time part)")
    ap.add_argument("--label", default="", help="--part time: the results key is "
                    "time_<label>_<cores>core (default: the recipe), e.g. float32 for a box "
                    "without AVX512-BF16")
    args = ap.parse_args()
    os.chdir(ROOT)
    if "quality" in args.part:
        merge("quality", part_quality(args.seeds))
    if "reproduce" in args.part:
        merge("reproduce", part_reproduce(args.seeds))
    if "one_thread" in args.part:
        merge("one_thread", part_one_thread())
    if "time" in args.part:
        for recipe in args.recipes:
            res = part_time(args.cores, recipe, args.make, args.keep, RECIPES[recipe])
            merge(f"time_{args.label or recipe}_{args.cores}core", res)
    print(json.dumps(json.loads(OUT.read_text()), indent=1)[:3000])


if __name__ == "__main__":
    main()
