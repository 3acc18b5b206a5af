"""``make all`` on the synthetic default over several fold seeds: stage times, every model's
OOF, and the chain's claims as paired comparisons over the seeds.

For each fold seed, the Makefile's whole chain (data folds train-tabular train-image-only
train-image train-tabular-image stack report) runs into its own artifacts folder
(``artifacts/bench_pipeline/seed<N>``), each stage timed; then the OOF pAUC of every level-1
model and of the stack (nested CV), each model's Spearman correlation with the oracle's
``logit_image`` part, and per seed: image-only >= 0.10. After the seeds, every "A beats B" of
the chain is a paired comparison over the seeds (``isic compare``: corrected repeated-CV t-test
and patient bootstrap, conditions checked): nested stack vs its best single input, second GBDT
pass vs first (LightGBM, XGBoost), fused CNN vs its tabular input. Writes
``benchmarks/results/pipeline.json``.

    python benchmarks/bench_pipeline.py [--seeds 0 1 2] [--profile default] [--make VAR=value]

Results are merged into ``--out`` seed by seed (written after each), so ``--stages`` can rerun
part of the chain of a seed after a change and keep the other stages' times. Timings depend on
the load of the machine: each run (one seed's chain) records the load average at its own start
and end, and at the start of each of its stages (``runs`` of the results file; a file written
before records one ``loadavg_start`` for the whole batch, the first chain's, in every run).
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

from isicstack.conditions import cpu_has_bf16, cpu_model
from isicstack.data.io import write_json
from isicstack.data.layout import resolve_data_dir
from isicstack.data.metric import pauc, seed_spread
from isicstack.data.predictions import load_oof
from isicstack.evaluation.evaluate import compare
from isicstack.evaluation.oracle import oracle_parts, rank_correlations
from isicstack.ledger.result import read_result

ROOT = Path(__file__).resolve().parents[1]
CHAINS = "artifacts/bench_pipeline"  # relative to ROOT (the script runs there)

STAGES = ["data", "folds", "train-tabular", "train-image-only", "train-image",
          "train-tabular-image", "stack", "calibrate", "report"]
FIRST, SECOND = ("lgbm", "xgb"), ("lgbm_img", "xgb_img")


def run_chain(art: Path, seed: int, profile: str, extra: list[str], stages: list[str]
              ) -> tuple[dict[str, float], dict[str, tuple[float, float, float]]]:
    """The given stages of ``make all`` in order, timed; ``extra`` = more make arguments.
    Returns each stage's seconds and the load average at its start."""
    times, loads = {}, {}
    for stage in stages:
        loads[stage] = os.getloadavg()
        t0 = time.perf_counter()
        cmd = ["make", "--no-print-directory", stage, f"ARTIFACTS={art}", f"PROFILE={profile}",
               f"ARGS_folds=seed={seed}", *extra]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode})")
        times[stage] = round(time.perf_counter() - t0, 1)
        print(f"  seed {seed} {stage}: {times[stage]:.0f}s", flush=True)
    return times, loads


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
    stack = read_result(art / "runs" / "stack").details  # a chain of before reads alike
    out["stack_method"] = stack["chosen"]
    out["stack_inputs"] = stack["input_names"]
    out["stack_picks"] = stack.get("cv", {}).get("picks")
    # the chosen method's own CV, picked on these OOF scores: optimistic, shown beside
    out["stack_best_of_methods"] = stack.get("best_of_methods", {}).get("oof_pauc")
    out["goals"] = {"image_only_ge_0.10": out["pauc"]["vision_imgonly"] >= 0.10}
    return out


# (key, A, B): B - A over the paired seeds; "best_input" = the stack input with the best mean
# OOF pAUC over the seeds (a choice that favours A, the input)
CLAIMS = [("stack_vs_best_input", "best_input", "stack"),
          ("lgbm_img_vs_lgbm", "lgbm", "lgbm_img"),
          ("xgb_img_vs_xgb", "xgb", "xgb_img"),
          ("fused_vs_lgbm", "lgbm", "vision_fused")]


def comparisons(per_seed: dict[str, dict[str, Any]], n_boot: int = 1000,
                chains_dir: str = CHAINS) -> dict[str, Any]:
    """Every claim of the chain as ``isic compare`` over the seeds' chains (same folds paired)."""
    seeds = sorted(per_seed, key=int)
    inputs = per_seed[seeds[0]]["stack_inputs"]
    best = max(inputs, key=lambda n: sum(per_seed[s]["pauc"][n] for s in seeds))
    # one glob naming exactly these seeds' chain folders, relative to the repository root
    chains = (f"{chains_dir}/seed{{{','.join(seeds)}}}" if len(seeds) > 1
              else f"{chains_dir}/seed{seeds[0]}")
    out: dict[str, Any] = {"best_input": best}
    for key, a, b in CLAIMS:
        a = best if a == "best_input" else a
        out[key] = {"a": a, "b": b, **compare(f"{chains}:{a}", f"{chains}:{b}",
                                              n_boot=n_boot)["oof"]}
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
        "stack_best_of_methods": agg(lambda r: r.get("stack_best_of_methods")),
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
                    help="extra make variables, e.g. ARGS_train-image-only=runtime.cpu_threads=1")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline.json"))
    ap.add_argument("--chains", default=CHAINS,
                    help="folder of the seed<N> chains, relative to the repository root")
    ap.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES,
                    help="run only these targets (the other times are kept from --out)")
    ap.add_argument("--resummarize", action="store_true",
                    help="re-score the chains on disk and recompute the summary and the "
                         "comparisons of --out (no runs)")
    args = ap.parse_args()
    os.chdir(ROOT)  # the chains' folders are named relative to the repository root
    if args.resummarize:  # re-score the chains on disk (stage times kept), then summarise
        result = json.loads(Path(args.out).read_text())
        for seed, r in result["seeds"].items():
            result["seeds"][seed] = {"seconds": r["seconds"],
                                     **scores(ROOT / args.chains / f"seed{seed}", args.profile)}
        result.update(summary=summary(result["seeds"]), machine=runs_machine(result),
                      comparisons=comparisons(result["seeds"], chains_dir=args.chains))
        write_json(result, args.out)
        return
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {"seeds": {}}
    result.setdefault("runs", [])
    for seed in args.seeds:
        art = ROOT / args.chains / f"seed{seed}"
        load0 = os.getloadavg()  # this chain's start, not the batch's
        seconds, stage_loads = run_chain(art, seed, args.profile, args.make, args.stages)
        old = result["seeds"].get(str(seed), {}).get("seconds", {})
        # a stage never run by this script for this seed has no time (None), not a made-up one
        merged = {st: seconds.get(st, old.get(st)) for st in STAGES}
        result["seeds"][str(seed)] = {"seconds": merged, **scores(art, args.profile)}
        # stage times of one seed can come from runs on different machines: each run says which
        result["runs"].append({"seed": seed, "stages": args.stages, "make": args.make,
                               "machine": machine(), "loadavg_start": load0,
                               "loadavg_stage_start": stage_loads,
                               "loadavg_end": os.getloadavg()})
        result.update(profile=args.profile, machine=machine(), summary=summary(result["seeds"]))
        write_json(result, out)  # after every seed: a later failure loses nothing
        print(json.dumps({"seed": seed, "pauc": result["seeds"][str(seed)]["pauc"],
                          "goals": result["seeds"][str(seed)]["goals"]}, indent=1), flush=True)
    if len(result["seeds"]) > 1:
        result["comparisons"] = comparisons(result["seeds"], chains_dir=args.chains)
        write_json(result, out)
    print(json.dumps(result["summary"], indent=1))


def machine(cores: int | None = None, model: str | None = None, bf16: bool | None = None
            ) -> str:
    """The box the stage times were measured on (one line, for the times table)."""
    bf16 = cpu_has_bf16() if bf16 is None else bf16
    return (f"{cores or os.cpu_count()} cores, {model or cpu_model()}, "
            f"{'AVX512-BF16' if bf16 else 'no AVX512-BF16 (float32 CNN)'}")


def runs_machine(result: dict[str, Any]) -> str:
    """The machine(s) of the recorded runs (an older file's runs carry cpu_model/cpu_bf16)."""
    cores = result.pop("cpu_count", None)
    result.pop("cpu_model", None), result.pop("cpu_bf16", None)
    for r in result.get("runs", []):
        if "machine" not in r:
            r["machine"] = machine(cores, r.pop("cpu_model", None), r.pop("cpu_bf16", None))
    return "; ".join(sorted({r["machine"] for r in result.get("runs", [])})) or machine()

if __name__ == "__main__":
    main()
