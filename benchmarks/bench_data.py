"""Data-contract benchmarks: metadata load + validation at full size, crop read throughput.

Prints the figures and writes ``benchmarks/results/data.json``. Usage::

    python benchmarks/bench_data.py [--meta PATH] [--images PATH] [--n-images N]

``--meta`` defaults to the full-size synthetic ``train-metadata.csv`` (generated metadata-only
into a temp folder when absent); ``--images`` defaults to the real crops in
``../shared/real-dev/images`` when present (real JPEGs), else the default synthetic set.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from isicstack.data.crops import CropStore, decode_jpeg
from isicstack.data.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REAL_IMAGES = ROOT.parent / "shared" / "real-dev" / "images" / "train-image.hdf5"


def _rel(path: Path) -> str:
    """``path`` relative to the repository (results files carry no machine paths); a file in
    a temporary folder is named as such."""
    path = Path(path).resolve()
    if path.is_relative_to(Path(tempfile.gettempdir()).resolve()):
        return f"<temporary folder>/{path.name}"
    return Path(os.path.relpath(path, ROOT)).as_posix()

_LOAD_SNIPPET = """
import resource, sys, time
from isicstack.data.io import load_metadata
t = time.perf_counter(); df = load_metadata(sys.argv[1], "train"); dt = time.perf_counter() - t
print(df.height, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def bench_metadata(path: Path) -> dict:
    """Load + validate in a fresh process so peak RSS is the loader's own."""
    out = subprocess.run([sys.executable, "-c", _LOAD_SNIPPET, str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    rows, seconds, rss = int(out[0]), float(out[1]), float(out[2])
    return {"file": _rel(path), "rows": rows, "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds), "peak_rss_mib": round(rss)}


def full_metadata() -> Path:
    """The full-size synthetic metadata, generated without images when not on disk."""
    existing = ROOT / "data" / "synthetic" / "full" / "train-metadata.csv"
    if existing.is_file():
        return existing
    from isicstack.synthetic.config import SynthConfig
    from isicstack.synthetic.generate import write_metadata_only

    out = Path(tempfile.mkdtemp(prefix="isic_full_meta_"))
    write_metadata_only(SynthConfig(rows=401_059, patients=1042, prevalence=0.00098,
                                    test_rows=3, out=str(out)))
    return out / "train-metadata.csv"


class _Decoded:
    """A map-style dataset decoding crops through a CropStore (opened lazily per worker)."""

    def __init__(self, path: Path, ids: list[str]) -> None:
        self.store, self.ids = CropStore(path), ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> int:
        return int(self.store.read(self.ids[i]).shape[0])


def _collate(batch: list[int]) -> list[int]:
    return batch


def bench_crops(path: Path, n: int, workers: int = 2) -> dict:
    """images/s: decode from memory vs HDF5 read+decode vs a DataLoader with ``workers``."""
    import torch

    store = CropStore(path)
    ids = sorted(store.keys())[:n]
    blobs = [store.read_bytes(i) for i in ids]
    t = time.perf_counter()
    sides = [decode_jpeg(b).shape[0] for b in blobs]
    mem = len(ids) / (time.perf_counter() - t)
    store.close()
    t = time.perf_counter()
    for i in ids:
        store.read(i)
    single = len(ids) / (time.perf_counter() - t)
    loader = torch.utils.data.DataLoader(_Decoded(path, ids), batch_size=64, num_workers=workers,
                                         collate_fn=_collate, persistent_workers=False)
    t = time.perf_counter()
    count = sum(len(b) for b in loader)
    loaded = count / (time.perf_counter() - t)
    return {"file": _rel(path), "images": len(ids), "median_side_px": int(np.median(sides)),
            "decode_from_memory_per_s": round(mem), "hdf5_read_decode_per_s": round(single),
            f"dataloader_{workers}_workers_per_s": round(loaded),
            "hdf5_overhead_ratio": round(mem / single, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta", type=Path, default=None)
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--n-images", type=int, default=5000)
    args = parser.parse_args()
    meta = args.meta or full_metadata()
    images = args.images or (REAL_IMAGES if REAL_IMAGES.is_file() else
                             ROOT / "data" / "synthetic" / "default" / "train-image.hdf5")
    result = {"machine": f"{os.cpu_count()} cores", "metadata": bench_metadata(meta),
              "crops": bench_crops(images, args.n_images)}
    for section in ("metadata", "crops"):
        print(f"[{section}]")
        for k, v in result[section].items():
            print(f"  {k:34s} {v}")
    write_json(result, RESULTS / "data.json")


if __name__ == "__main__":
    main()
