"""Calibrated risk on the synthetic default and on real-dev: Brier score before and after
``isic calibrate``, against the oracle's (the generator's true probability).

Synthetic: for every chain of ``bench_pipeline.py`` (``artifacts/bench_pipeline/seed<N>``, read
only: the maps and calibrated scores go to a temporary folder), each model's OOF Brier score
as scored, after the prior correction alone, and calibrated (nested: fold k mapped by a map fitted
on the other folds), for ``platt`` and ``isotonic``; each with a 95 % patient-bootstrap interval,
the ratio calibrated / oracle on the same replicates (the goal: <= 1.10), and the Brier score of
the best monotone map fitted on the same rows (a floor no calibration can beat: the gap from it
to the oracle is ranking). Real-dev (``../shared/real-dev/tabular``, skipped with the reason when
absent): the tabular stage into a temporary folder, then the same figures and the reliability
curve with its band. Writes ``benchmarks/results/calibration.json`` with the conditions of this
process (``isicstack.conditions.run_conditions``) and the load average at its start and end.

    python benchmarks/bench_calibration.py [--seeds 0 1 2] [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.conditions import run_conditions, usable_cores
from isicstack.data.io import write_json
from isicstack.data.metric import seed_spread

ROOT = Path(__file__).resolve().parents[1]
CHAINS = "artifacts/bench_pipeline"
SYNTHETIC = "datasets/synthetic/default"
REAL_DEV = "../shared/real-dev/tabular"
METHODS = ("platt", "isotonic")
GOAL = 1.10


def figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The per-model figures kept in the results file (``metrics``: the calibrate run's
    details)."""
    out = {}
    for name, m in metrics["models"].items():
        loss = m["losses"]
        row = {stage: {"brier": loss[stage]["brier"], "brier_ci": loss[stage].get("brier_ci")}
               for stage in loss}
        row["log_loss"] = {s: loss[s]["log_loss"] for s in loss}
        row["change_ci"] = loss["calibrated"].get("brier_diff_ci")
        row["floor"] = m["monotone_floor_brier"]
        row["slope"] = {k: v["slope"] for k, v in m["slope"].items()}
        row["fold_pauc_max_shift"] = m["fold_pauc_max_shift"]
        if "vs_oracle" in m:
            row["ratio"] = m["vs_oracle"]["calibrated"]["brier_ratio"]
            row["ratio_ci"] = m["vs_oracle"]["calibrated"].get("brier_ratio_ci")
            row["ratio_raw"] = m["vs_oracle"]["raw"]["brier_ratio"]
            row["floor_ratio"] = row["floor"] / loss["oracle"]["brier"]
        out[name] = row
    return out


def synthetic(seeds: list[int], n_boot: int) -> dict[str, Any]:
    """Every chain's models, both maps."""
    from isicstack.evaluation.calibrate import run
    from isicstack.evaluation.config import CalibrateConfig

    per_seed: dict[str, Any] = {}
    for seed in seeds:
        art = Path(CHAINS) / f"seed{seed}"
        if not (art / "oof" / "stack.parquet").is_file():
            print(f"skip seed {seed}: {art} has no finished chain (oof/stack.parquet)")
            continue
        per_seed[str(seed)] = {}
        for method in METHODS:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                [m] = run(CalibrateConfig(artifacts=str(art), data_dir=SYNTHETIC,
                                          method=method, out=tmp, n_boot=n_boot))
                per_seed[str(seed)][method] = {"seconds": round(time.perf_counter() - t0, 1),
                                               "models": figures(m.details)}
            print(f"seed {seed} {method}: " + ", ".join(
                f"{n} {r['calibrated']['brier']:.5f} ({r['ratio']:.3f} x oracle)"
                for n, r in per_seed[str(seed)][method]["models"].items()), flush=True)
    return per_seed


def summary(per_seed: dict[str, Any]) -> dict[str, Any]:
    """Mean and sd over seeds of each model's ratio to the oracle, and whether the goal holds."""
    out: dict[str, Any] = {}
    for method in METHODS:
        names = sorted({n for r in per_seed.values() for n in r[method]["models"]})
        rows = {}
        for n in names:
            got = [r[method]["models"][n] for r in per_seed.values() if n in r[method]["models"]]
            rows[n] = {k: seed_spread([g[k] for g in got]) for k in
                       ("ratio", "ratio_raw", "floor_ratio")}
            rows[n]["brier_calibrated"] = seed_spread([g["calibrated"]["brier"] for g in got])
            rows[n]["brier_raw"] = seed_spread([g["raw"]["brier"] for g in got])
            rows[n]["goal_met_every_seed"] = all(g["ratio"] <= GOAL for g in got)
            rows[n]["floor_within_goal_every_seed"] = all(g["floor_ratio"] <= GOAL for g in got)
        out[method] = rows
    return out


def real_dev(n_boot: int) -> dict[str, Any]:
    """Tabular stage on real-dev into a temporary folder, calibrated; the reliability curve."""
    data = Path(REAL_DEV)
    if not (data / "train-metadata.csv").is_file():
        return {"skipped": f"{REAL_DEV}/train-metadata.csv not found"}
    from isicstack.data.config import FoldsConfig
    from isicstack.data.folds import ensure_folds
    from isicstack.evaluation.calibrate import run
    from isicstack.evaluation.calibration_metrics import reliability
    from isicstack.evaluation.calibration_report import read_calibrated
    from isicstack.evaluation.config import CalibrateConfig
    from isicstack.settings.layers import load_config
    from isicstack.tabular.config import TabularConfig
    from isicstack.tabular.cv import run as train_tabular

    with tempfile.TemporaryDirectory() as tmp:
        ensure_folds(FoldsConfig(data_dir=str(data), artifacts=tmp, n_folds=5, seed=0))
        train_tabular(load_config(TabularConfig, "tabular", "real_dev", [f"artifacts={tmp}"]))
        [m] = run(CalibrateConfig(artifacts=tmp, data_dir=str(data), n_boot=n_boot))
        folds = pl.read_parquet(Path(tmp) / "folds.parquet")
        y, patients = folds["target"].to_numpy(), folds["patient_id"].to_numpy()
        curves = {n: reliability(y, read_calibrated(Path(tmp) / "calibration", n, folds)[
            "calibrated"], patients, 8, n_boot) for n in m.details["models"]}
    return {"data": REAL_DEV, "rows": m.n, "positives": m.n_pos,
            "models": figures(m.details), "reliability": curves}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "calibration.json"))
    args = ap.parse_args()
    os.chdir(ROOT)  # chains and data are named relative to the repository root
    load_start = os.getloadavg()
    per_seed = synthetic(args.seeds, args.n_boot)
    result = {"goal": f"calibrated Brier <= {GOAL:.2f} x the oracle's (synthetic default)",
              "chains": CHAINS, "data": SYNTHETIC, "n_boot": args.n_boot,
              "seeds": per_seed, "summary": summary(per_seed) if per_seed else None,
              "real_dev": real_dev(args.n_boot),
              # the real-dev GBDTs train at threads=0 (every core this process may use)
              "conditions": run_conditions(usable_cores(), stage="calibrate"),
              "loadavg_start": load_start, "loadavg_end": os.getloadavg()}
    write_json(result, args.out)
    print(json.dumps(result["summary"], indent=1))
    if "skipped" in result["real_dev"]:
        print(f"skip real-dev: {result['real_dev']['skipped']}")


if __name__ == "__main__":
    main()
