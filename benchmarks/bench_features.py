"""Time and peak memory of ``build_features`` at full competition scale (401,059 train rows).

The synthetic frame replicates the 1,003 real-dev rows with multiplicative noise onto ~1,042
patients with heavy-tailed lesion counts (a few patients with thousands of lesions, as in the
real data), so the patient windows see realistic group sizes. The build runs in a fresh
subprocess so its peak RSS (``ru_maxrss``) is the build's own plus its input frame, not the
generator's. Goal: < 30 s and < 4 GB on a 2-core machine.

    .venv/bin/python benchmarks/bench_features.py [--rows 401059] [--patients 1042]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from isicstack.data.io import load_metadata, write_json
from isicstack.data.schema import NUMERIC_FEATURES, TEST_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # read-only data beside the repository, never copied into it
REAL_DEV = SHARED / "real-dev" / "tabular" / "train-metadata.csv"
TEST_FIXTURE = SHARED / "fixtures" / "isic2024" / "test-metadata.csv"
RESULTS = ROOT / "benchmarks" / "results" / "features.json"


def heavy_tailed_counts(rows: int, patients: int, rng: np.random.Generator) -> np.ndarray:
    """Lesions per patient: lognormal (sd 1.2), at least 1, summing exactly to ``rows``."""
    w = rng.lognormal(0.0, 1.2, patients)
    counts = np.maximum(1, np.floor(w / w.sum() * rows)).astype(np.int64)
    diff = rows - counts.sum()
    order = np.argsort(-counts)
    i = 0
    while diff != 0:  # hand the rounding remainder to / take it from the largest patients
        j = order[i % patients]
        step = 1 if diff > 0 else -1
        if counts[j] + step >= 1:
            counts[j] += step
            diff -= step
        i += 1
    return counts


def synthetic_frame(rows: int, patients: int, seed: int = 0) -> pl.DataFrame:
    """A ``rows``-row train frame with the test-file columns (plus target) from real-dev."""
    rng = np.random.default_rng(seed)
    real = load_metadata(REAL_DEV, "train")
    counts = heavy_tailed_counts(rows, patients, rng)
    pid = np.repeat(np.arange(patients), counts)
    take = rng.integers(0, real.height, rows)
    df = real.select(*TEST_COLUMNS, "target")[take]
    noise = {c: rng.lognormal(0.0, 0.1, rows) for c in NUMERIC_FEATURES if c != "age_approx"}
    # one age per patient (plus a later visit for some), like the real data
    age = rng.choice(np.arange(20, 90, 5), patients).astype(np.float64)[pid]
    age += 5.0 * (rng.random(rows) < 0.05)
    return df.with_columns(
        pl.Series("isic_id", [f"ISIC_{i:07d}" for i in range(rows)]),
        pl.Series("patient_id", [f"IP_{p:07d}" for p in pid]),
        pl.Series("age_approx", age),
        *(pl.col(c) * pl.Series(v) for c, v in noise.items()),
    )


def worker(train_path: str, test_path: str, out: str) -> None:
    """Build default features for one frame in this (fresh) process and record the cost."""
    from isicstack.features.build import build_features
    from isicstack.features.config import FeatureConfig

    train = pl.read_parquet(train_path)
    test = load_metadata(test_path, "test")
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    fs = build_features(train, test, FeatureConfig())
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    Path(out).write_text(json.dumps({
        "seconds": round(secs, 2),
        "peak_rss_mib": round(peak, 1),
        "rss_after_load_mib": round(rss_input, 1),
        "train_shape": list(fs.train.shape),
        "test_shape": list(fs.test.shape) if fs.test is not None else None,
        "n_numeric": len(fs.numeric),
        "n_categorical": len(fs.categorical),
        "train_mib": round(fs.train.estimated_size("mb"), 1),
        "threads": pl.thread_pool_size(),
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=401_059)
    ap.add_argument("--patients", type=int, default=1_042)
    ap.add_argument("--worker", nargs=3, metavar=("TRAIN", "TEST", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    missing = [str(p) for p in (REAL_DEV, TEST_FIXTURE) if not p.is_file()]
    if missing:
        print(f"skip bench_features: {', '.join(missing)} not found (the frame is built from "
              "the real-dev rows in ../shared beside the repository)")
        return
    t0 = time.perf_counter()
    df = synthetic_frame(args.rows, args.patients)
    sizes = df.group_by("patient_id").len().get_column("len")
    gen_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        train_path = Path(tmp) / "train.parquet"
        df.write_parquet(train_path)
        del df
        out = Path(tmp) / "result.json"
        subprocess.run([sys.executable, __file__, "--worker", str(train_path),
                        str(TEST_FIXTURE), str(out)], check=True)
        res = json.loads(out.read_text())
    res.update(
        rows=args.rows, patients=args.patients, generate_seconds=round(gen_s, 1),
        lesions_per_patient={"min": int(sizes.min()), "median": float(sizes.median()),
                             "max": int(sizes.max())},
        goal={"seconds": 30, "peak_rss_mib": 4096},
        passed=res["seconds"] < 30 and res["peak_rss_mib"] < 4096,
    )
    write_json(res, RESULTS)
    for k, v in res.items():
        print(f"{k:>22}: {v}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
