"""Tabular-stage benchmarks: quality on synthetic and real rows, wall time at full size.

Usage::

    python benchmarks/bench_tabular.py [--parts real_dev,default,full]

- ``real_dev``: ../shared/real-dev/tabular (1,003 real rows), 5-fold patient CV, mean over 3 fold
  seeds, for (a) raw + categorical with LightGBM and (b) the full configuration; (b) vs (a) for
  LightGBM with ``isic compare`` (same fold seeds, paired).
- ``default``: the synthetic default set: OOF pAUC per model and as a fraction of the oracle's.
- ``full``: 401,059 synthetic rows, the ``full`` profile: wall time of the whole stage.
Writes ``benchmarks/results/tabular.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from isicstack.data.io import write_json
from isicstack.data.metric import pauc
from isicstack.ledger.result import METRICS, read_result

ROOT = Path(__file__).resolve().parents[1]
REAL_DEV = ROOT.parent / "shared" / "real-dev" / "tabular"
RESULTS = ROOT / "benchmarks" / "results"


def isic(*args: str) -> float:
    """Run an ``isic`` command from the repository root; return its wall time."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "isicstack.pipelines.cli", *args], check=True,
                   cwd=ROOT)
    return time.perf_counter() - t


def real_dev(tmp: Path) -> dict:
    from isicstack.evaluation.compared_runs import load_eval
    from isicstack.evaluation.config import EvaluateConfig
    from isicstack.evaluation.evaluate import compare, eval_path
    from isicstack.evaluation.evaluate import run as evaluate
    from isicstack.evaluation.paired import pauc_interval

    art = tmp / "real_dev"
    isic("folds", f"data_dir={REAL_DEV}", f"artifacts={art}")
    out = {}
    for label, models, overrides in (
        ("raw_categorical_lgbm", ["lgbm"], ["features.groups=[raw,categorical]"]),
        ("full_config", ["lgbm", "xgb"], []),
    ):
        res = evaluate(EvaluateConfig(name=label, data_dir=str(REAL_DEV), artifacts=str(art),
                                      profile="real_dev", fold_seeds=[0, 1, 2], n_folds=5,
                                      models=models, stage_overrides=overrides))
        out[label] = res["summary"]
        for model in models:  # mean over seeds of the pooled OOF pAUC, patient-bootstrap CI
            runs = load_eval(eval_path(art, label), model)
            out[label][model]["pooled"] = pauc_interval(runs, 1000)
    # do the patient-context features (in the full set) change LightGBM here? paired over seeds
    cmp = compare("raw_categorical_lgbm", "full_config", model="lgbm", artifacts=art)["lgbm"]
    out["comparisons"] = {"full_vs_raw_categorical_lgbm": cmp}
    return out


def synthetic(tmp: Path, profile: str) -> dict:
    data = ROOT / "data" / "synthetic" / profile
    if not (data / "train-metadata.csv").is_file():
        isic("synth", "--profile", profile)
    art = tmp / profile
    isic("folds", "--profile", profile, f"data_dir={data}", f"artifacts={art}")
    wall = isic("train-tabular", "--profile", profile, f"data_dir={data}", f"artifacts={art}")
    oracle = pl.read_parquet(data / "oracle.parquet")
    folds = pl.read_parquet(art / "folds.parquet").join(oracle, on="isic_id")
    oracle_pauc = pauc(folds["target"].to_numpy(), folds["prob"].to_numpy())
    out: dict = {"rows": folds.height, "positives": int(folds["target"].sum()),
                 "wall_seconds": round(wall, 1), "oracle_pauc": round(oracle_pauc, 5)}
    for metrics in sorted((art / "runs").glob(f"*/{METRICS}")):
        r = read_result(metrics.parent)
        out[r.name] = {"oof_pauc": round(r.pauc, 5), "oof_auc": round(r.auc, 4),
                       "fraction_of_oracle": round(r.pauc / oracle_pauc, 3),
                       "seconds": r.seconds}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="real_dev,default,full")
    args = parser.parse_args()
    path = RESULTS / "tabular.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["machine"] = f"{os.cpu_count()} cores"
    with tempfile.TemporaryDirectory(prefix="bench_tab_") as tmp:
        for part in args.parts.split(","):
            if part == "real_dev":
                if not REAL_DEV.is_dir():
                    print(f"skip real_dev: {REAL_DEV} not found")
                    continue
                result["real_dev"] = real_dev(Path(tmp))
            elif part in ("default", "full", "smoke"):
                result[part] = synthetic(Path(tmp), part)
            else:
                raise SystemExit(f"unknown part {part!r}")
            print(json.dumps({part: result[part]}, indent=2))
    if "full" in args.parts.split(","):  # peak over every child so far; the full part's
        # 401,059-row stage dominates it (a real_dev-only run must not overwrite it)
        result["children_peak_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    write_json(result, path)


if __name__ == "__main__":
    main()
