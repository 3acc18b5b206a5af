"""Two recipes for the fused image model, on bench_pipeline's chains, fold seed by fold seed.

``make all``'s fused CNN (``vision_fused``) is the *residual* recipe: random init, the
image-only budget (240 steps), the tabular logit term in the model from the first step, so the
CNN is fitted to what the tabular score leaves unexplained. The other recipe (``vision_fromimg``,
the default before) starts each fold from the image-only model of that fold and trains 60 more
steps with the tabular score as an input; its image part, trained to rank lesions alone, mostly
re-learns what the table already says (sizes, colours).

For each fold seed whose ``bench_pipeline.py`` chain has its fused model
(``artifacts/bench_pipeline/seed<N>``), the other recipe goes to
``artifacts/bench_fusion/seed<N>`` (folds, tabular scores and the image-only run copied from
the chain; a finished run is resumed, i.e. reused). Per seed: the OOF and per-fold pAUC of the
tabular input and both fused models, and the Spearman correlation of each (and of the residual
model's image term alone, ``vision_fused_image_part``) with the oracle's image-only part.
Writes ``benchmarks/results/fusion.json``.

    python benchmarks/bench_fusion.py [--seeds 0 1 2] [--threads 0]
"""

from __future__ import annotations

import argparse
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
from isicstack.evaluation.oracle import oracle_parts, rank_correlations
from isicstack.vision.train import cpu_has_bf16, cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TAB, FUSED, ALT, PART = "lgbm", "vision_fused", "vision_fromimg", "vision_fused_image_part"
ALT_RECIPE = ["fusion=true", "name=fromimg", f"tabular_name={TAB}", "init_from=vision_imgonly",
              "steps=60"]
COPIED = ("folds.parquet", f"oof/{TAB}.parquet", f"test/{TAB}.parquet", "runs/vision_imgonly")


def train_alternative(chain: Path, art: Path, threads: int) -> None:
    """The from-image-only recipe on the chain's folds, tabular scores and image-only models."""
    for rel in COPIED:
        src, dst = chain / rel, art / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and not dst.is_dir():
            shutil.copytree(src, dst)
        elif src.is_file() and not dst.is_file():
            shutil.copy2(src, dst)
    cmd = [str(ROOT / ".venv" / "bin" / "isic"), "train-image", "--profile", "default",
           f"artifacts={art.relative_to(ROOT)}", f"cpu_threads={threads}", *ALT_RECIPE]
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

    def minus(a: str, b: str) -> float | None:
        x, ref = out[a]["oof_pauc"], out[b]["oof_pauc"]
        return None if x is None or ref is None else x - ref

    def folds_above(b: str) -> int | None:
        new, ref = out[FUSED]["fold_pauc"], out[b]["fold_pauc"]
        return None if new is None or ref is None else int(sum(new[k] > ref[k] for k in new))

    out["gains"] = {"fused_minus_lgbm": minus(FUSED, TAB), "fromimg_minus_lgbm": minus(ALT, TAB),
                    "fused_minus_fromimg": minus(FUSED, ALT),
                    "folds_fused_above_fromimg": folds_above(ALT),
                    "folds_fused_above_lgbm": folds_above(TAB)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=0, help="cpu_threads of the image runs")
    ap.add_argument("--out", type=Path, default=RESULTS / "fusion.json")
    args = ap.parse_args()
    oracle = resolve_data_dir("auto", "default") / "oracle.parquet"
    per_seed = {}
    for seed in args.seeds:
        chain = ROOT / "artifacts" / "bench_pipeline" / f"seed{seed}"
        if not (chain / "oof" / f"{FUSED}.parquet").is_file():
            print(f"seed {seed}: no bench_pipeline chain with {FUSED} in {chain}; skipped "
                  "(run benchmarks/bench_pipeline.py first)")
            continue
        art = ROOT / "artifacts" / "bench_fusion" / f"seed{seed}"
        train_alternative(chain, art, args.threads)
        per_seed[str(seed)] = scores(chain, art, oracle)
        print(seed, per_seed[str(seed)]["gains"], flush=True)
    if not per_seed:
        print("no chain to compare: nothing written")
        return
    gains = next(iter(per_seed.values()))["gains"]
    summary = {k: seed_spread([r["gains"][k] for r in per_seed.values()]) for k in gains}
    for n in (TAB, FUSED, ALT, PART):
        summary[n] = seed_spread([r[n]["oof_pauc"] for r in per_seed.values()])
    write_json({"alternative": ALT_RECIPE, "cpu_model": cpu_model(), "cpu_bf16": cpu_has_bf16(),
                "seeds": per_seed, "summary": summary}, args.out)
    print(summary)


if __name__ == "__main__":
    main()
