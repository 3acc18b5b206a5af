"""The few-lesions model (``lgbm_solo``, configs/chain.yaml ``train-tabular-solo``) against the
full model on held-out lesions, when a request holds a single lesion of each patient.

The saved models of a chain (read only) score every test lesion of the synthetic default
through the ``isic predict`` path: the submitted full model inside its patient (all its
lesions) and alone (a one-lesion patient: its patient-context features degenerate), and the
solo model (no patient context, so inside = alone; checked). Test pAUC of each with a
patient-bootstrap interval of the paired difference, and at each model's own OOF threshold
(sensitivity 0.8) the test sensitivity and review rate. Writes ``benchmarks/results/solo.json``.

    python benchmarks/bench_solo.py [--chain artifacts/bench_pipeline/seed0]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
from bench_single_lesion import pauc_diff, score, thresholds, variants

from isicstack.data.io import load_metadata, write_json
from isicstack.data.layout import ORACLE, TEST_IMAGES, TEST_META

ROOT = Path(__file__).resolve().parents[1]


def at_threshold(y: np.ndarray, pred: np.ndarray, thr: float) -> dict[str, float]:
    """Test sensitivity and review rate at an OOF-picked threshold (and where the scores lie:
    a model scored outside the setting it was trained in can move all of them)."""
    hit = pred >= thr
    return {"threshold": thr, "sensitivity": float(hit[y == 1].mean()),
            "review_rate": float(hit.mean()), "score_median": float(np.median(pred)),
            "score_p99": float(np.quantile(pred, 0.99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chain", default="artifacts/bench_pipeline/seed0")
    ap.add_argument("--data", default="datasets/synthetic/default")
    ap.add_argument("--solo", default="lgbm_solo")
    ap.add_argument("--stacker", default="stack", help="'' = the fallback model (lgbm)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "solo.json"))
    args = ap.parse_args()
    os.chdir(ROOT)  # chain and data are named relative to the repository root
    from isicstack.inference.config import PredictConfig
    from isicstack.inference.predict import resolve_models

    pcfg = PredictConfig(data_dir=args.data, artifacts=args.chain, accelerator="cpu",
                         num_workers=0, cpu_threads=1, stacker=args.stacker,
                         models=[args.solo])
    stacker, final, predictors = resolve_models(pcfg, Path(args.data) / TEST_IMAGES)
    full = "stack" if stacker is not None else final[0]
    test = load_metadata(Path(args.data) / TEST_META, "test")
    t0 = time.perf_counter()
    ways = variants(test)
    got = {way: score(ways[way], stacker, predictors) for way in ("inside", "alone")}
    seconds = round(time.perf_counter() - t0, 1)
    solo_gap = float(np.abs(got["inside"][args.solo] - got["alone"][args.solo]).max())
    oracle = test.select("isic_id").join(pl.read_parquet(Path(args.data) / ORACLE),
                                         on="isic_id", how="left", maintain_order="left")
    y = oracle["target"].fill_null(0).to_numpy().astype(np.int64)
    patients = test["patient_id"].to_numpy()
    thr = thresholds(args.chain, [full, args.solo])
    scores = {"full_inside": got["inside"][full], "full_alone": got["alone"][full],
              "solo": got["alone"][args.solo]}
    result = {
        "chain": args.chain, "data": args.data, "rows": test.height,
        "patients": int(test["patient_id"].n_unique()), "positives": int(y.sum()),
        "full": full, "solo": args.solo, "seconds": seconds,
        "solo_inside_vs_alone_max_abs": solo_gap,
        "at_threshold": {k: at_threshold(y, v, thr[args.solo if k == "solo" else full])
                         for k, v in scores.items()},
        "test_pauc": {"solo_vs_full_alone": pauc_diff(y, scores["full_alone"], scores["solo"],
                                                      patients, args.n_boot),
                      "solo_vs_full_inside": pauc_diff(y, scores["full_inside"],
                                                       scores["solo"], patients, args.n_boot)},
    }
    write_json(result, args.out)
    print(json.dumps({k: result[k] for k in ("full", "solo", "solo_inside_vs_alone_max_abs",
                                             "at_threshold", "test_pauc")}, indent=1))


if __name__ == "__main__":
    main()
