"""Two recipes for the fused image model, on bench_pipeline's chains, fold seed by fold seed.

``make all``'s fused CNN (``vision_fused``) starts each fold from the image-only model of that
fold and trains 60 more steps with the tabular score as an input. Its image part was trained to
rank lesions on its own, so it mostly re-learns what the table already says (sizes, colours);
on the synthetic default it has scored below the LightGBM score it receives. The *residual*
recipe trains the same model from random init for the image-only budget (240 steps) with the
tabular logit term present from the first step, so the CNN is fitted to what the tabular score
leaves unexplained (``vision_residual``).

For each fold seed whose ``bench_pipeline.py`` chain has tabular scores
(``artifacts/bench_pipeline/seed<N>``; without its fused model only residual vs tabular is scored),
the residual run goes to ``artifacts/bench_fusion/seed<N>`` (folds and tabular scores copied
from the chain; a finished run is resumed, i.e. reused). Per seed: the OOF and per-fold pAUC of
the tabular input, the chain's fused model and the residual one, and each model's Spearman
correlation with the oracle's image-only part. Writes ``benchmarks/results/fusion.json``.

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
TAB = "lgbm"
RESIDUAL = ["fusion=true", "name=residual", f"tabular_name={TAB}", "init_from=", "steps=240"]
COPIED = ("folds.parquet", f"oof/{TAB}.parquet", f"test/{TAB}.parquet")


def train_residual(chain: Path, art: Path, threads: int) -> None:
    """The residual recipe on the chain's folds and tabular scores (resumed when finished)."""
    for rel in COPIED:
        (art / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (art / rel).is_file():
            shutil.copy2(chain / rel, art / rel)
    cmd = [str(ROOT / ".venv" / "bin" / "isic"), "train-image", "--profile", "default",
           f"artifacts={art.relative_to(ROOT)}", f"cpu_threads={threads}", *RESIDUAL]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode})")


def scores(chain: Path, art: Path, oracle: Path) -> dict[str, Any]:
    """OOF/fold pAUC and oracle correlation of the tabular input and both fused models."""
    folds = pl.read_parquet(chain / "folds.parquet")
    y, fold = folds["target"].to_numpy(), folds["fold"].to_numpy()
    paths = {TAB: chain / "oof" / f"{TAB}.parquet",
             "vision_fused": chain / "oof" / "vision_fused.parquet",
             "vision_residual": art / "oof" / "vision_residual.parquet"}
    # a chain cut short after train-tabular has no fused model: its figures are None
    preds = {n: load_oof(p, folds) for n, p in paths.items() if p.is_file()}
    parts = oracle_parts(oracle, folds["isic_id"])
    corr = rank_correlations(preds, parts.select("logit_image")) if parts is not None else {}
    out: dict[str, Any] = {}
    for name in paths:
        if name not in preds:
            out[name] = {"oof_pauc": None, "fold_pauc": None, "spearman_logit_image": None}
            continue
        s = fold_summary(y, preds[name], fold)
        out[name] = {"oof_pauc": s["oof_pauc"], "fold_pauc": s["fold_pauc"],
                     "spearman_logit_image": corr.get(name, {}).get("logit_image")}
    def minus(a: str, b: str) -> float | None:
        x, ref = out[a]["oof_pauc"], out[b]["oof_pauc"]
        return None if x is None or ref is None else x - ref

    def folds_above(b: str) -> int | None:
        new, ref = out["vision_residual"]["fold_pauc"], out[b]["fold_pauc"]
        return None if ref is None else int(sum(new[k] > ref[k] for k in new))

    out["gains"] = {"residual_minus_lgbm": minus("vision_residual", TAB),
                    "fused_minus_lgbm": minus("vision_fused", TAB),
                    "residual_minus_fused": minus("vision_residual", "vision_fused"),
                    "folds_residual_above_fused": folds_above("vision_fused"),
                    "folds_residual_above_lgbm": folds_above(TAB)}
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
        if not (chain / "oof" / f"{TAB}.parquet").is_file():
            print(f"seed {seed}: no bench_pipeline chain with {TAB} scores in {chain}; "
                  "skipped (run benchmarks/bench_pipeline.py first)")
            continue
        art = ROOT / "artifacts" / "bench_fusion" / f"seed{seed}"
        train_residual(chain, art, args.threads)
        per_seed[str(seed)] = scores(chain, art, oracle)
        print(seed, per_seed[str(seed)]["gains"], flush=True)
    if not per_seed:
        print("no chain to compare: nothing written")
        return
    gains = next(iter(per_seed.values()))["gains"]
    summary = {k: seed_spread([r["gains"][k] for r in per_seed.values()]) for k in gains}
    for n in (TAB, "vision_fused", "vision_residual"):
        summary[n] = seed_spread([r[n]["oof_pauc"] for r in per_seed.values()])
    write_json({"recipe": RESIDUAL, "cpu_model": cpu_model(), "cpu_bf16": cpu_has_bf16(),
                "seeds": per_seed, "summary": summary}, args.out)
    print(summary)


if __name__ == "__main__":
    main()
