"""OOF quality of every model of a finished run, against the synthetic generator's oracle.

Usage (after ``bench_pipeline.py``, whose seed-0 ``make all`` is read by default, or after
``make all``, which writes ``artifacts/`` from ``datasets/synthetic/default``)::

    python benchmarks/bench_quality.py [--artifacts DIR] [--data datasets/synthetic/default]

Reads ``folds.parquet`` and every ``oof/*.parquet`` of the artifacts folder and the data's
``oracle.parquet`` (true probabilities, which the pipeline never reads); writes
``benchmarks/results/quality.json``: per model the pooled OOF pAUC/AUC, the fold mean and sd,
the share of the oracle's pAUC and the conditions its run recorded (``provenance.json``: the
figures are the run's, so its machine and threads, not this script's). Cheap (seconds): the
training is ``make all``'s.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import polars as pl

from isicstack.data.io import write_json
from isicstack.data.layout import IMAGE_PART_SUFFIX, run_dir
from isicstack.data.metric import fold_summary, pauc
from isicstack.data.provenance import read_provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def quality(artifacts: Path, data: Path) -> dict:
    """The figures of ``quality.json`` for one artifacts folder and its synthetic data."""
    folds = pl.read_parquet(artifacts / "folds.parquet")
    oracle = pl.read_parquet(data / "oracle.parquet").select("isic_id", "prob")
    rows = folds.join(oracle, on="isic_id", how="left", maintain_order="left")
    y = rows["target"].to_numpy()
    best = pauc(y, rows["prob"].to_numpy())
    out: dict = {"data_dir": Path(os.path.relpath(data, ROOT)).as_posix(), "rows": rows.height,
                 "positives": int(y.sum()), "patients": rows["patient_id"].n_unique(),
                 "oracle_pauc": round(best, 5), "models": {}}
    for path in sorted((artifacts / "oof").glob("*.parquet")):
        oof = rows.select("isic_id", "target", "fold").join(
            pl.read_parquet(path).select("isic_id", "pred"), on="isic_id", how="inner")
        s = fold_summary(oof["target"].to_numpy(), oof["pred"].to_numpy(),
                         oof["fold"].to_numpy())
        out["models"][path.stem] = {
            "rows": oof.height, "oof_pauc": round(s["oof_pauc"], 5),
            "oof_auc": round(s["oof_auc"], 4), "fold_pauc_mean": s["fold_pauc_mean"],
            "fold_pauc_std": s["fold_pauc_std"], "share_of_oracle": s["oof_pauc"] / best,
            # a fused run's image term is written by that run: its conditions are the run's
            "conditions": read_provenance(run_dir(
                artifacts, path.stem.removesuffix(IMAGE_PART_SUFFIX))).get("conditions")}
    return out


def default_artifacts() -> Path:
    """``make bench`` runs bench_pipeline first: read its seed-0 chain, else ``artifacts/``."""
    piped = ROOT / "artifacts" / "bench_pipeline" / "seed0"
    return piped if (piped / "folds.parquet").is_file() else ROOT / "artifacts"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=Path, default=None,
                    help="default: artifacts/bench_pipeline/seed0 when present, else artifacts")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "synthetic" / "default")
    args = ap.parse_args()
    args.artifacts = args.artifacts or default_artifacts()
    missing = [p for p in (args.artifacts / "folds.parquet", args.data / "oracle.parquet")
               if not p.is_file()]
    if missing:
        print(f"skip bench_quality: {', '.join(map(str, missing))} not found "
              "(run `make all` on the synthetic default first)")
        return 0
    out = quality(args.artifacts, args.data)
    out["artifacts"] = Path(os.path.relpath(args.artifacts, ROOT)).as_posix()
    write_json(out, RESULTS / "quality.json")
    print(f"wrote {RESULTS / 'quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
