"""``make all`` on the synthetic default over several fold seeds: stage times and every model's OOF.

For each fold seed, the Makefile's whole chain (data folds train-tabular train-image-only
train-image train-tabular-image stack report) runs into its own artifacts folder, each stage
timed; then the OOF pAUC of every level-1 model and of the stack, each model's Spearman
correlation with the oracle's ``logit_image`` part, and the issue-9 goals checked per seed:
image-only >= 0.10, fused >= its tabular input + 0.01, second-pass GBDT >= first pass + 0.005,
stack >= every input. Writes ``benchmarks/results/pipeline.json`` (mean and sd over seeds).

    python benchmarks/bench_pipeline.py [--seeds 0 1 2] [--profile default]

Timings depend on the load of the machine: the load average at start and end is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.io import write_json
from isicstack.data.layout import resolve_data_dir
from isicstack.data.metric import pauc
from isicstack.evaluation.oracle import oracle_parts, rank_correlations

ROOT = Path(__file__).resolve().parents[1]

STAGES = ["data", "folds", "train-tabular", "train-image-only", "train-image",
          "train-tabular-image", "stack", "report"]
FIRST, SECOND = ("lgbm", "xgb"), ("lgbm_img", "xgb_img")


def run_chain(art: Path, seed: int, profile: str, extra: list[str]) -> dict[str, float]:
    """Every stage of ``make all`` in order, timed; ``extra`` = more make variables."""
    times = {}
    for stage in STAGES:
        t0 = time.perf_counter()
        cmd = ["make", "--no-print-directory", stage, f"ARTIFACTS={art}", f"PROFILE={profile}",
               f"ARGS_folds=seed={seed}", *extra]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode})")
        times[stage] = round(time.perf_counter() - t0, 1)
        print(f"  seed {seed} {stage}: {times[stage]:.0f}s", flush=True)
    return times


def scores(art: Path, profile: str) -> dict[str, Any]:
    """OOF pAUC of every level-1 model and the stack; oracle correlations; goal checks."""
    folds = pl.read_parquet(art / "folds.parquet")
    y = folds["target"].to_numpy()
    names = sorted(p.stem for p in (art / "oof").glob("*.parquet"))
    preds = {}
    for n in names:
        oof = folds.select("isic_id").join(pl.read_parquet(art / "oof" / f"{n}.parquet"),
                                           on="isic_id", how="left", maintain_order="left")
        preds[n] = oof["pred"].to_numpy()
    out: dict[str, Any] = {"pauc": {n: pauc(y, p) for n, p in preds.items()}}
    parts = oracle_parts(resolve_data_dir("auto", profile) / "oracle.parquet", folds["isic_id"])
    if parts is not None:
        corr = rank_correlations(preds, parts)
        out["spearman_logit_image"] = {n: c["logit_image"] for n, c in corr.items()}
        prob = pl.read_parquet(resolve_data_dir("auto", profile) / "oracle.parquet")
        prob = folds.select("isic_id").join(prob, on="isic_id", maintain_order="left")
        out["oracle_pauc"] = pauc(y, prob["prob"].to_numpy())
    stack = json.loads((art / "runs" / "stack" / "metrics.json").read_text())
    out["stack_method"] = stack["chosen"]
    s = out["pauc"]
    inputs = [n for n in s if n != "stack"]
    out["goals"] = {
        "image_only_ge_0.10": s["vision_imgonly"] >= 0.10,
        "fused_ge_tabular_plus_0.01": s["vision_fused"] >= s["lgbm"] + 0.01,
        "second_pass_ge_first_plus_0.005": all(s[b] >= s[a] + 0.005
                                               for a, b in zip(FIRST, SECOND, strict=True)),
        "stack_ge_every_input": s["stack"] >= max(s[n] for n in inputs),
    }
    out["gains"] = {"fused_minus_lgbm": s["vision_fused"] - s["lgbm"],
                    **{f"{b}_minus_{a}": s[b] - s[a] for a, b in zip(FIRST, SECOND, strict=True)},
                    "stack_minus_best_input": s["stack"] - max(s[n] for n in inputs)}
    return out


def summary(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd over seeds of every model's pAUC (and oracle correlation), gain, stage time."""
    def agg(get: Any) -> dict[str, float]:
        vals = np.array([get(r) for r in per_seed.values()], dtype=float)
        return {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if len(vals) > 1
                else 0.0}

    first = next(iter(per_seed.values()))
    models = {}
    for n in first["pauc"]:
        models[n] = {"pauc": agg(lambda r, n=n: r["pauc"][n])}
        if "spearman_logit_image" in first:
            models[n]["spearman_logit_image"] = agg(lambda r, n=n: r["spearman_logit_image"][n])
    out: dict[str, Any] = {
        "n_seeds": len(per_seed),
        "models": models,
        "gains": {k: agg(lambda r, k=k: r["gains"][k]) for k in first["gains"]},
        "stages": {k: agg(lambda r, k=k: r["seconds"][k]) for k in first["seconds"]},
        "total_seconds": agg(lambda r: sum(r["seconds"].values())),
        # goal names without dots, so a table template can address them
        "goals_met_every_seed": {g.replace(".", ""): all(r["goals"][g] for r in per_seed.values())
                                 for g in first["goals"]},
    }
    if "oracle_pauc" in first:
        out["oracle_pauc"] = agg(lambda r: r["oracle_pauc"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--make", nargs="*", default=[],
                    help="extra make variables, e.g. ARGS_train-image-only=cpu_threads=1")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline.json"))
    ap.add_argument("--resummarize", action="store_true",
                    help="recompute the summary of an existing --out file (no runs)")
    args = ap.parse_args()
    if args.resummarize:
        result = json.loads(Path(args.out).read_text())
        result["summary"] = summary(result["seeds"])
        write_json(result, args.out)
        return
    load0 = os.getloadavg()
    per_seed = {}
    for seed in args.seeds:
        art = ROOT / "artifacts" / "bench_pipeline" / f"seed{seed}"
        seconds = run_chain(art, seed, args.profile, args.make)
        per_seed[str(seed)] = {"seconds": seconds, **scores(art, args.profile)}
        print(json.dumps({"seed": seed, "pauc": per_seed[str(seed)]["pauc"],
                          "goals": per_seed[str(seed)]["goals"]}, indent=1), flush=True)
    result = {"profile": args.profile, "seeds": per_seed, "summary": summary(per_seed),
              "make_vars": args.make, "cpu_count": os.cpu_count(),
              "loadavg_start": load0, "loadavg_end": os.getloadavg()}
    write_json(result, args.out)
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
