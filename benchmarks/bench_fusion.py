"""Two recipes for the fused image model, on bench_pipeline's chains, fold seed by fold seed.

The chains' fused CNN (``vision_fused``, ``make all``'s until the cuts of ``bench_makeall.py``)
is the *residual* recipe: random init, the image-only budget (240 steps), the tabular logit term
in the model from the first step, so the CNN is fitted to what the tabular score leaves
unexplained. The other recipe (``vision_fromimg``, the default before it and ``make all``'s again
since the cuts: ``configs/chain.yaml``) starts each fold from the image-only model of that fold
and trains 60 more steps with the tabular score as an input.

For each fold seed whose ``bench_pipeline.py`` chain has its fused model
(``artifacts/bench_pipeline/seed<N>``), the other recipe goes to
``artifacts/bench_fusion/seed<N>`` (made anew: folds, tabular scores and the image-only run
copied from the chain, then trained). Per seed: the OOF and per-fold pAUC of the tabular input
and both fused models, and the Spearman correlation of each (and of the residual model's image
term alone, ``vision_fused_image_part``) with the oracle's image-only part. Then the two recipes
are compared over the seeds with ``isic compare`` (it refuses runs made under other conditions:
run this with the chain's ``cpu_threads``). Writes ``benchmarks/results/fusion.json``.

    python benchmarks/bench_fusion.py [--seeds 0 1 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.data.io import write_json
from isicstack.data.layout import resolve_data_dir
from isicstack.data.metric import fold_summary, seed_spread
from isicstack.data.predictions import load_oof
from isicstack.evaluation.evaluate import compare
from isicstack.evaluation.oracle import oracle_parts, rank_correlations

ROOT = Path(__file__).resolve().parents[1]
CHAINS, WORK = "artifacts/bench_pipeline", "artifacts/bench_fusion"  # relative to ROOT
RESULTS = ROOT / "benchmarks" / "results"
TAB, FUSED, ALT, PART = "lgbm", "vision_fused", "vision_fromimg", "vision_fused_image_part"
ALT_RECIPE = ["fusion=true", "name=fromimg", f"tabular_name={TAB}", "init_from=vision_imgonly",
              "optim.steps=60"]
COPIED = ("folds.parquet", f"oof/{TAB}.parquet", f"test/{TAB}.parquet", "runs/vision_imgonly")


def train_alternative(chain: Path, art: Path, threads: int) -> None:
    """The from-image-only recipe on the chain's folds, tabular scores and image-only models."""
    shutil.rmtree(art, ignore_errors=True)  # anew: never a stale copy or a reused run
    for rel in COPIED:
        src, dst = chain / rel, art / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    cmd = [str(ROOT / ".venv" / "bin" / "isic"), "train-image", "--profile", "default",
           f"artifacts={art.relative_to(ROOT)}", f"runtime.cpu_threads={threads}", *ALT_RECIPE]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode})")


def scores(chain: Path, art: Path, oracle: Path) -> dict[str, Any]:
    """OOF/fold pAUC and oracle correlation of the tabular input and both fused models."""
    folds = pl.read_parquet(chain / "folds.parquet")
    y, fold = folds["target"].to_numpy(), folds["fold"].to_numpy()
    paths = {TAB: chain / "oof" / f"{TAB}.parquet", FUSED: chain / "oof" / f"{FUSED}.parquet",
             PART: chain / "oof" / f"{PART}.parquet", ALT: art / "oof" / f"{ALT}.parquet"}
    preds = {n: load_oof(p, folds) for n, p in paths.items() if p.is_file()}
    parts = oracle_parts(oracle, folds["isic_id"])
    corr = rank_correlations(preds, parts.select("logit_image")) if parts is not None else {}
    out: dict[str, Any] = {}
    for name in paths:
        if name not in preds:  # e.g. a chain made before fused runs wrote their image term
            out[name] = {"oof_pauc": None, "fold_pauc": None, "spearman_logit_image": None}
            continue
        s = fold_summary(y, preds[name], fold)
        out[name] = {"oof_pauc": s["oof_pauc"], "fold_pauc": s["fold_pauc"],
                     "spearman_logit_image": corr.get(name, {}).get("logit_image")}

    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1,
                    help="cpu_threads of the image runs (the chains' own, for a paired test)")
    ap.add_argument("--out", type=Path, default=RESULTS / "fusion.json")
    ap.add_argument("--summary-only", action="store_true", help="no training: re-score")
    args = ap.parse_args()
    os.chdir(ROOT)  # runs are named relative to the repository root
    oracle = resolve_data_dir("auto", "default") / "oracle.parquet"
    per_seed = {}
    for seed in args.seeds:
        chain = ROOT / CHAINS / f"seed{seed}"
        if not (chain / "oof" / f"{FUSED}.parquet").is_file():
            print(f"seed {seed}: no bench_pipeline chain with {FUSED} in {chain}; skipped "
                  "(run benchmarks/bench_pipeline.py first)")
            continue
        art = ROOT / WORK / f"seed{seed}"
        if not args.summary_only:
            train_alternative(chain, art, args.threads)
        per_seed[str(seed)] = scores(chain, art, oracle)
    if not per_seed:
        print("no chain to compare: nothing written")
        return
    seeds = ",".join(per_seed)
    group = f"{{{seeds}}}" if len(per_seed) > 1 else seeds
    comparisons = {
        "fused_vs_fromimg": compare(f"{WORK}/seed{group}:{ALT}", f"{CHAINS}/seed{group}:{FUSED}",
                                    n_boot=1000)["oof"],
        "fromimg_vs_lgbm": compare(f"{CHAINS}/seed{group}:{TAB}", f"{WORK}/seed{group}:{ALT}",
                                   n_boot=1000)["oof"]}
    summary = {n: seed_spread([r[n]["oof_pauc"] for r in per_seed.values()])
               for n in (TAB, FUSED, ALT, PART)}
    write_json({"alternative": ALT_RECIPE, "seeds": per_seed, "summary": summary,
                "comparisons": comparisons}, args.out)


if __name__ == "__main__":
    main()
