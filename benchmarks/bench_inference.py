"""Offline inference throughput and memory: can the saved models score 500k test lesions?

Trains a small pipeline once (tabular ``default`` profile: 5 folds x 2 bags of LightGBM and
XGBoost; the image stage's ``default`` backbone, briefly trained, on ``image_folds`` folds; a
rank_weighted stacker), then runs ``isic predict`` in a fresh subprocess on synthetic test sets
of 10k and 100k rows with ~330 lesions per patient (the real data has ~385) and reports

* rows/s of the tabular path (features + every GBDT) and images/s of the image path (decode +
  every fold model), from the run's own per-model timings (``predict.json``);
* the projected time for 500,000 test lesions (per-row times of the largest run, with the image
  path scaled to 5 folds when fewer were trained);
* the peak RSS of each predict run (``getrusage(RUSAGE_CHILDREN)`` of a wrapper process), which
  should barely grow with the test size because rows are scored in patient batches.

Usage: ``python benchmarks/bench_inference.py [--sizes 10000,100000] [--batch-rows 10000]``.
Writes ``benchmarks/results/inference.json``. Data and models are cached in ``--work``
(default ``<tempdir>/isic_bench_inference``). The figures are indicative on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from isicstack.data.io import write_json
from isicstack.stacking.methods import fit_stacker
from isicstack.synthetic.config import SynthConfig
from isicstack.synthetic.generate import generate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET_ROWS = 500_000
FOLDS = 5
# run a command in a child, then print the child's peak RSS (KiB on Linux) as the last line
WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def isic(*args: str) -> None:
    """Run an ``isic`` stage from the repository root (fails loudly)."""
    subprocess.run([sys.executable, "-m", "isicstack.pipelines.cli", *args], check=True,
                   cwd=ROOT)


def synth(out: Path, rows: int, test_rows: int, patients: int, seed: int) -> Path:
    """A synthetic data set in ``out`` (reused when already there)."""
    if (out / "test-image.hdf5").is_file():
        return out
    t0 = time.perf_counter()
    generate(SynthConfig(rows=rows, test_rows=test_rows, patients=patients, prevalence=0.03,
                         image_size=64, seed=seed, out=str(out), workers=2))
    print(f"generated {out} ({rows} train / {test_rows} test) in "
          f"{time.perf_counter() - t0:.0f}s", flush=True)
    return out


def fit_stack(art: Path) -> None:
    """A rank_weighted stacker on the OOF rows every level-1 model scored (the image stage
    trained fewer folds than ``isic stack`` needs)."""
    names = sorted(p.stem for p in (art / "oof").glob("*.parquet"))
    oof = [pl.read_parquet(art / "oof" / f"{n}.parquet").select("isic_id", "pred")
           for n in names]
    rows = pl.read_parquet(art / "folds.parquet").select("isic_id", "target")
    for o in oof:
        rows = rows.join(o.select("isic_id"), on="isic_id", how="semi", maintain_order="left")
    X = np.column_stack([rows.join(o, on="isic_id", how="left", maintain_order="left")["pred"]
                         for o in oof])
    stacker = fit_stacker("rank_weighted", X, rows["target"].to_numpy(), names)
    write_json(stacker.to_dict(), art / "runs" / "stack" / "stacker.json")


def train(data: Path, art: Path, image_folds: int) -> None:
    """The models predict loads: tabular default profile, a short image run, the stacker."""
    if (art / "runs" / "stack" / "stacker.json").is_file():
        return
    common = [f"data_dir={data}", f"artifacts={art}"]
    isic("folds", *common)
    isic("train-tabular", *common, "threads=1")
    folds = "[" + ",".join(str(k) for k in range(image_folds)) + "]"
    isic("train-image", *common, f"folds={folds}", "optim.steps=10",
         "data.num_workers=1", "runtime.cpu_threads=1")
    fit_stack(art)


def predict(test: Path, art: Path, out: Path, batch_rows: int) -> dict:
    """One ``isic predict`` in a fresh process: its summary plus peak RSS and wall time."""
    cmd = [sys.executable, "-m", "isicstack.pipelines.cli", "predict", f"data_dir={test}",
           f"artifacts={art}", f"out={out / 'submission.csv'}", f"preds_dir={out}",
           f"batch_rows={batch_rows}", "num_workers=1", "cpu_threads=1"]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], cwd=ROOT, check=True,
                          stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "predict.json").read_text())
    summary["peak_rss_mb"] = round(int(done.stdout.split()[-1]) / 1024, 1)
    summary["wall_seconds"] = round(wall, 1)
    return summary


def rates(s: dict, image_folds: int) -> dict:
    """Throughput of each path and the projection to TARGET_ROWS test lesions."""
    n = s["rows"]
    tab = sum(v for k, v in s["seconds"].items() if not k.startswith("vision_"))
    img = sum(v for k, v in s["seconds"].items() if k.startswith("vision_"))
    img_5 = img * FOLDS / image_folds
    fixed = s["wall_seconds"] - tab - img  # imports, model loading, I/O, stacker, submission
    return {
        "rows": n, "batches": s["batches"], "peak_rss_mb": s["peak_rss_mb"],
        "wall_seconds": s["wall_seconds"], "tabular_seconds": round(tab, 1),
        "image_seconds": round(img, 1), "other_seconds": round(fixed, 1),
        "tabular_rows_per_s": round(n / tab, 1),
        "image_images_per_s": round(n / img, 1),
        "image_images_per_s_5_folds": round(n / img_5, 1),
        "projected_500k_seconds": {
            "tabular": round(tab / n * TARGET_ROWS, 0),
            "image_5_folds": round(img_5 / n * TARGET_ROWS, 0),
            "total": round((tab + img_5) / n * TARGET_ROWS + fixed, 0),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--image-folds", type=int, default=1,
                    help="image folds trained (projection scales the image path to 5)")
    ap.add_argument("--work", default=os.environ.get(
        "ISIC_BENCH_DIR", os.path.join(tempfile.gettempdir(), "isic_bench_inference")))
    args = ap.parse_args()
    work = Path(args.work)
    train_dir = synth(work / "train", 4000, 3, 12, 0)
    art = work / f"artifacts_f{args.image_folds}"
    t0 = time.perf_counter()
    train(train_dir, art, args.image_folds)
    print(f"models ready in {art} ({time.perf_counter() - t0:.0f}s)", flush=True)
    results = {"machine": f"{platform.node()}: {os.cpu_count()} CPU(s), shared; CPU only",
               "batch_rows": args.batch_rows, "image_folds_trained": args.image_folds,
               "runs": {}}
    for n in (int(s) for s in args.sizes.split(",")):
        test = synth(work / f"test_{n}", 1000, n, 3, 1)  # ~330 test lesions per patient
        summary = predict(test, art, work / f"out_{n}", args.batch_rows)
        results["runs"][str(n)] = r = rates(summary, args.image_folds)
        print(json.dumps(r, indent=1), flush=True)
    results["models"] = summary["models"]
    write_json(results, RESULTS / "inference.json")
    print(f"wrote {RESULTS / 'inference.json'}")


if __name__ == "__main__":
    main()
