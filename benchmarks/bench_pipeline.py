"""``make all`` on the synthetic default over several fold seeds: stage times and every model's OOF.

For each fold seed, the Makefile's whole chain (data folds train-tabular train-image-only
train-image train-tabular-image stack report) runs into its own artifacts folder, each stage
timed; then the OOF pAUC of every level-1 model and of the stack, each model's Spearman
correlation with the oracle's ``logit_image`` part, and the issue-9 goals checked per seed:
image-only >= 0.10, fused >= its tabular input + 0.01, second-pass GBDT >= first pass + 0.005,
stack >= every input. Writes ``benchmarks/results/pipeline.json`` (mean and sd over seeds).

    python benchmarks/bench_pipeline.py [--seeds 0 1 2] [--profile default]

Results are merged into ``--out`` seed by seed (written after each), so ``--stages`` can rerun
part of the chain of a seed after a change and keep the other stages' times. Timings depend on
the load of the machine: the load average at start and end of each run is recorded.
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

import polars as pl

from isicstack.data.io import write_json
from isicstack.data.layout import resolve_data_dir
from isicstack.data.metric import pauc, seed_spread
from isicstack.data.predictions import load_oof
from isicstack.evaluation.oracle import oracle_parts, rank_correlations
from isicstack.vision.train import cpu_has_bf16, cpu_model

ROOT = Path(__file__).resolve().parents[1]

STAGES = ["data", "folds", "train-tabular", "train-image-only", "train-image",
          "train-tabular-image", "stack", "report"]
FIRST, SECOND = ("lgbm", "xgb"), ("lgbm_img", "xgb_img")


def run_chain(art: Path, seed: int, profile: str, extra: list[str],
              stages: list[str]) -> dict[str, float]:
    """The given stages of ``make all`` in order, timed; ``extra`` = more make arguments."""
    times = {}
    for stage in stages:
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
    preds = {n: load_oof(art / "oof" / f"{n}.parquet", folds) for n in names}
    out: dict[str, Any] = {"pauc": {n: pauc(y, p) for n, p in preds.items()}}
    oracle = resolve_data_dir("auto", profile) / "oracle.parquet"
    parts = oracle_parts(oracle, folds["isic_id"])
    if parts is not None:  # the oracle read once more for its probability column only
        corr = rank_correlations(preds, parts)
        out["spearman_logit_image"] = {n: c["logit_image"] for n, c in corr.items()}
        prob = folds.select("isic_id").join(pl.read_parquet(oracle, columns=["isic_id", "prob"]),
                                            on="isic_id", maintain_order="left")
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
    def agg(get: Any) -> dict[str, float | int | None]:
        return seed_spread([get(r) for r in per_seed.values()])

    first = next(iter(per_seed.values()))
    models = {}
    # every model of any seed: one that a seed's chain did not make is left out of its mean
    for n in sorted({m for r in per_seed.values() for m in r["pauc"]}):
        models[n] = {"pauc": agg(lambda r, n=n: r["pauc"].get(n))}
        if "spearman_logit_image" in first:
            models[n]["spearman_logit_image"] = agg(
                lambda r, n=n: r.get("spearman_logit_image", {}).get(n))
    out: dict[str, Any] = {
        "n_seeds": len(per_seed),
        "models": models,
        "gains": {k: agg(lambda r, k=k: r["gains"][k]) for k in first["gains"]},
        "stages": {k: agg(lambda r, k=k: r["seconds"][k]) for k in first["seconds"]},
        "total_seconds": agg(lambda r: None if None in r["seconds"].values()
                             else sum(r["seconds"].values())),
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
    ap.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES,
                    help="run only these targets (the other times are kept from --out)")
    ap.add_argument("--resummarize", action="store_true",
                    help="recompute the summary of an existing --out file (no runs)")
    args = ap.parse_args()
    if args.resummarize:
        result = json.loads(Path(args.out).read_text())
        result["summary"] = summary(result["seeds"])
        write_json(result, args.out)
        return
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {"seeds": {}}
    result.setdefault("runs", [])
    load0 = os.getloadavg()
    for seed in args.seeds:
        art = ROOT / "artifacts" / "bench_pipeline" / f"seed{seed}"
        seconds = run_chain(art, seed, args.profile, args.make, args.stages)
        old = result["seeds"].get(str(seed), {}).get("seconds", {})
        # a stage never run by this script for this seed has no time (None), not a made-up one
        merged = {st: seconds.get(st, old.get(st)) for st in STAGES}
        result["seeds"][str(seed)] = {"seconds": merged, **scores(art, args.profile)}
        # stage times of one seed can come from runs on different machines: each run says which
        result["runs"].append({"seed": seed, "stages": args.stages, "make": args.make,
                               "cpu_model": cpu_model(), "cpu_bf16": cpu_has_bf16(),
                               "loadavg_start": load0, "loadavg_end": os.getloadavg()})
        result.update(profile=args.profile, cpu_count=os.cpu_count(), cpu_model=cpu_model(),
                      cpu_bf16=cpu_has_bf16(),
                      summary=summary(result["seeds"]))
        write_json(result, out)  # after every seed: a later failure loses nothing
        print(json.dumps({"seed": seed, "pauc": result["seeds"][str(seed)]["pauc"],
                          "goals": result["seeds"][str(seed)]["goals"]}, indent=1), flush=True)
    print(json.dumps(result["summary"], indent=1))

if __name__ == "__main__":
    main()
