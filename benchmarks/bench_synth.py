"""Synthetic generator throughput: full-size tables, and crops at the full profile's size.

Usage::

    python benchmarks/bench_synth.py [--rows 401059] [--n-images 20000] [--image-size 128]

The tables (train + test metadata, oracle) are generated at the full size (401,059 rows, 1,042
patients); the crops are rendered + JPEG-encoded for ``--n-images`` rows of that set with the
configured worker count, and the time for all rows is projected from that rate (rendering is
per-row independent, so the rate does not depend on how many rows are drawn). Writes
``benchmarks/results/synth.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from isicstack.data.io import write_json
from isicstack.synthetic.config import SynthConfig
from isicstack.synthetic.generate import generate, simulate
from isicstack.synthetic.render import encode_images, image_params

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=401_059)
    parser.add_argument("--patients", type=int, default=1042)
    parser.add_argument("--n-images", type=int, default=20_000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cfg = SynthConfig(rows=args.rows, test_rows=3, patients=args.patients, prevalence=0.00098,
                      image_size=args.image_size, workers=args.workers)
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        cfg.out = tmp
        t = time.perf_counter()
        generate(cfg, images=False)
        tables_s = time.perf_counter() - t
    c, train, lat = simulate(cfg)
    rows = np.flatnonzero(train)[: args.n_images]
    params = image_params(c, lat["s"], lat["u"], lat["v"], cfg.image_size,
                          np.random.default_rng([cfg.seed, 2]))
    t = time.perf_counter()
    n_bytes = sum(len(b) for _, b in encode_images(c["isic_id"][rows], params[rows], cfg.seed, 0,
                                                   cfg.workers, cfg.jpeg_quality))
    img_s = time.perf_counter() - t
    rate = len(rows) / img_s
    result = {
        "machine": f"{os.cpu_count()} cores",
        "rows": args.rows, "patients": args.patients,
        "tables_seconds": round(tables_s, 1), "table_rows_per_s": round(args.rows / tables_s),
        "image_size": args.image_size, "workers": args.workers, "images_timed": len(rows),
        "images_per_s": round(rate, 1), "mean_jpeg_kib": round(n_bytes / len(rows) / 1024, 2),
        "projected_full_minutes": round((tables_s + args.rows / rate) / 60, 1),
    }
    for k, v in result.items():
        print(f"  {k:24s} {v}")
    write_json(result, RESULTS / "synth.json")


if __name__ == "__main__":
    main()
