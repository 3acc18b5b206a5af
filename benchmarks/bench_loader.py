"""Can the stream loader feed a GPU? Images/s per loader worker for the whole training path.

The path of the ``full`` profile, with no decode cache: Kaggle-layout HDF5 (one dataset per
key) -> read (:class:`~isicstack.data.crops.CropStore`) -> decode (the project's one decoder,
``decode_jpeg``, fast DCT) -> batch, beside bare decode of the same bytes from memory in one
thread. Two ways: ``augment_on: loader`` (``train_transform(128, "strong")`` per crop in 1 and
2 worker processes, collated; each reads every crop once, so a key's first-read cost is in the
figure) and ``augment_on: device`` (the full profile's: crops located once, decode threads of
the training process decode each crop into its place in the batch, the augmentation is left to
the device: per decode thread, in rounds each paired with a bare-decode run; and the same
through a worker process, which has to send the decoded pixels through shared memory). The
per-image cost of each stage, in one process, says where the time goes, for the current code
and for the code before (``f[key][()]`` reads, torchvision's ColorJitter on the uint8 crop),
and what the batch augmentation costs on this CPU (on a GPU: ``bench_gpu.py``).

Also the formula for the loader cores that feed ResNet50 128 px bf16 at a GPU's training rate;
the GPU rate is missing until ``benchmarks/bench_gpu.py`` runs on a GPU and fills it in.

Usage: ``python benchmarks/bench_loader.py [--n-images N] [--workers 1 2] [--out FILE]``.
Writes ``benchmarks/results/loader.json`` (paths relative to the repository root).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import default_collate
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vision import REAL_IMAGES, REPO, RESULTS, synthetic_hdf5  # noqa: E402

from isicstack.conditions import run_conditions  # noqa: E402
from isicstack.data.crops import CropStore, decode_jpeg  # noqa: E402
from isicstack.data.io import write_json  # noqa: E402
from isicstack.vision.batch_augment import BatchAugment, collate_padded  # noqa: E402
from isicstack.vision.data import (  # noqa: E402
    MEAN,
    STD,
    CropDataset,
    HDF5Source,
    _to_tensor,
    make_loader,
    train_transform,
)

SIZE, BATCH = 128, 128
GPU_FIELD = "gpu_train_img_s"  # filled by bench_gpu.py from gpu.json


def old_strong(size: int = SIZE) -> v2.Compose:
    """The ``strong`` transform before this benchmark: torchvision's ColorJitter on uint8."""
    return v2.Compose([
        v2.RandomResizedCrop((size, size), scale=(0.6, 1.0), antialias=True),
        v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
        v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2, 0.02)], p=0.8),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class H5pySource:
    """The read before this benchmark: ``f[key][()]`` through h5py, opened lazily per process."""

    def __init__(self, path: Path) -> None:
        self.path, self._file, self._pid = path, None, None

    def image(self, isic_id: str) -> np.ndarray:
        if self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return decode_jpeg(bytes(self._file[isic_id][()]), fast=True)

    def __getstate__(self) -> dict:
        return {"path": self.path, "_file": None, "_pid": None}


def per_image_us(fn: Callable[[Any], Any], items: list[Any]) -> float:
    """Microseconds per call of ``fn`` over ``items`` (after one warm-up call)."""
    fn(items[0])
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return round(1e6 * (time.perf_counter() - t0) / len(items), 1)


def bare_decode(blobs: list[bytes], min_s: float = 3.0) -> float:
    """Images/s of ``decode_jpeg(fast=True)`` on bytes already in memory, one process."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s:
        for b in blobs:
            decode_jpeg(b, fast=True)
        n += len(blobs)
    return n / (time.perf_counter() - t0)


def loader_rate(dataset: CropDataset, workers: int, batch: int = BATCH,
                collate_fn: Any = None) -> float:
    """Images/s a DataLoader delivers, timed from the first batch of every worker on."""
    loader = make_loader(dataset, batch, workers, collate_fn=collate_fn)
    n, t0 = 0, None
    for i, b in enumerate(loader):
        if i + 1 == max(workers, 1):  # each worker has started and opened its file
            t0 = time.perf_counter()
        elif t0 is not None:
            n += b["image"].shape[0]
    del loader
    return n / (time.perf_counter() - t0) if n else float("nan")


def stages(path: Path, ids: list[str], n: int = 400) -> dict[str, float]:
    """Microseconds per image of each step of the path, in this process."""
    ids = ids[:n]
    f = h5py.File(path, "r")
    store = CropStore(path)
    out = {"read_h5py_f_key": per_image_us(lambda k: bytes(f[k][()]), ids),
           "read_store_first": per_image_us(store.read_bytes, ids),
           "read_store_again": per_image_us(store.read_bytes, ids)}
    blobs = [store.read_bytes(k) for k in ids]
    out["decode"] = per_image_us(lambda b: decode_jpeg(b, fast=True), blobs)
    arrays = [decode_jpeg(b, fast=True) for b in blobs]
    out["to_tensor"] = per_image_us(_to_tensor, arrays)
    tensors = [_to_tensor(a) for a in arrays]
    new, old = train_transform(SIZE, "strong"), old_strong()
    geometry = v2.Compose(new.transforms[:3])
    out["geometry_rrc_flips"] = per_image_us(geometry, tensors)
    out["strong_transform"] = per_image_us(new, tensors)
    out["strong_transform_before"] = per_image_us(old, tensors)
    items = [{"image": new(t), "target": torch.tensor(0.0), "tab": torch.zeros(0), "index": i}
             for i, t in enumerate(tensors[:BATCH])]
    out["collate"] = round(per_image_us(lambda _: default_collate(items), [0] * 5) / BATCH, 1)
    if torch.cuda.is_available():
        x = default_collate(items)["image"]
        out["pin"] = round(per_image_us(lambda _: x.pin_memory(), [0] * 5) / BATCH, 1)
    # augment_on=device: the worker collates the decoded crops as they are (no resampling) and
    # the training process augments the batch (here on this CPU, one thread; a GPU: gpu.json)
    raw = [{"image": a, "target": torch.tensor(0.0), "tab": torch.zeros(0), "index": i}
           for i, a in enumerate(arrays[:BATCH])]
    out["collate_padded"] = round(per_image_us(lambda _: collate_padded(raw), [0] * 5) / BATCH, 1)
    batch = collate_padded(raw)
    aug = BatchAugment(SIZE, "strong", MEAN, STD)
    out["batch_augment_strong_cpu"] = round(
        per_image_us(lambda _: aug(batch["image"], batch["hw"]), [0] * 5) / BATCH, 1)
    with CropStore(path) as fresh:
        t0 = time.perf_counter()
        fresh.index(ids)
        out["index_per_key"] = round(1e6 * (time.perf_counter() - t0) / len(ids), 1)
    f.close()
    store.close()
    return out


def gpu_feed(per_worker: float, gpu_rate: float | None) -> dict[str, Any]:
    """Loader cores to feed the GPU: its training rate over one worker's rate (missing
    until a GPU measured its rate)."""
    cores = None if gpu_rate is None else int(np.ceil(gpu_rate / per_worker))
    return {"formula": "loader_cores = ceil(gpu_train_img_s / per_worker_img_s)",
            "model": "resnet50 128px bf16 channels_last",
            "per_worker_img_s": round(per_worker, 1),
            GPU_FIELD: gpu_rate if gpu_rate is not None else "missing",
            "gpu_source": "benchmarks/results/gpu.json in_memory.train_img_s "
                          "(benchmarks/bench_gpu.py)",
            "loader_cores": cores if cores is not None else "missing"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=7341, help="crops each loader reads once")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--before-images", type=int, default=1500,
                   help="crops for the loader with the code before (it is slow)")
    p.add_argument("--rounds", type=int, default=5,
                   help="paired rounds (device path, then bare decode) per thread count")
    p.add_argument("--out", default=str(RESULTS / "loader.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a loader worker runs one thread (DataLoader sets it so too)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if (REAL_IMAGES / "train-image.hdf5").is_file():
            path = REAL_IMAGES / "train-image.hdf5"
            source, shown = "real-dev", os.path.relpath(path, REPO)
        else:
            path = Path(tmp) / "loader.hdf5"
            synthetic_hdf5(path, args.n_images)
            source, shown = "synthetic", "synthetic crops in a temporary folder"
        ids = CropStore.ids(path)[:args.n_images]
        with CropStore(path) as store:
            blobs = [store.read_bytes(k) for k in ids]  # bare decode: the same bytes, all
        sizes = [decode_jpeg(b).shape[0] for b in blobs[:200]]
        decode = bare_decode(blobs)
        print(f"bare decode from memory: {decode:.0f} img/s (one process)", flush=True)
        stage_us = stages(path, ids)
        print("per image (us):", stage_us, flush=True)
        loaders: dict[str, Any] = {}
        ds = CropDataset(HDF5Source(path), ids, train_transform(SIZE, "strong"))
        for w in args.workers:
            rate = loader_rate(ds, w)
            loaders[f"{w}_workers"] = {"img_s": round(rate, 1), "per_worker_img_s":
                                       round(rate / w, 1), "per_worker_over_bare_decode":
                                       round(rate / w / decode, 3)}
            print(f"{w} worker(s): {rate:.0f} img/s, {rate / w:.0f} per worker = "
                  f"{rate / w / decode:.2f} of bare decode", flush=True)
        # augment_on=device: the store indexed once; w decode threads in this process read and
        # decode (the decoder releases the GIL), collate_padded fills the batch; the same
        # through a worker process, to show what sending the pixels costs
        src = HDF5Source(path)
        src.store.index(ids, sizes=True)
        for w in args.workers:  # paired rounds: each beside a bare decode run just after it
            rounds = []
            for _ in range(args.rounds):
                rate = loader_rate(CropDataset(src, ids, None, threads=w), 0,
                                   collate_fn=collate_padded)
                rounds.append((rate, bare_decode(blobs, 1.0)))
            rate = float(np.median([r for r, _ in rounds]))
            ratio = float(np.median([r / w / d for r, d in rounds]))
            loaders[f"device_{w}_workers"] = {
                "img_s": round(rate, 1), "per_worker_img_s": round(rate / w, 1),
                "per_worker_over_bare_decode": round(ratio, 3), "kind": "threads",
                "rounds": [{"img_s": round(r, 1), "bare_decode_img_s": round(d, 1)}
                           for r, d in rounds]}
            print(f"augment_on=device, {w} decode thread(s): {rate:.0f} img/s, {rate / w:.0f} "
                  f"per thread = {ratio:.2f} of bare decode (median of {args.rounds} paired "
                  "rounds)", flush=True)
        rate = loader_rate(CropDataset(src, ids, None), 1, collate_fn=collate_padded)
        loaders["device_1_process"] = {"img_s": round(rate, 1), "per_worker_over_bare_decode":
                                       round(rate / decode, 3), "kind": "worker process"}
        print(f"augment_on=device through a worker process: {rate:.0f} img/s", flush=True)
        before = CropDataset(H5pySource(path), ids[:args.before_images], old_strong())
        rate = loader_rate(before, 1)
        loaders["1_worker_code_before"] = {"img_s": round(rate, 1),
                                           "per_worker_over_bare_decode": round(rate / decode, 3)}
        print(f"1 worker, code before: {rate:.0f} img/s", flush=True)
    # the full profile's path (augment_on: device): one decode thread's rate
    per_worker = loaders["device_1_workers"]["per_worker_img_s"] if "device_1_workers" in \
        loaders else next(iter(loaders.values()))["per_worker_img_s"]
    dec = stage_us["decode"]
    io = {name: round(dec / (stage_us[key] + dec), 3) for name, key in
          (("h5py_read_before", "read_h5py_f_key"), ("first_read", "read_store_first"),
           ("repeat_read", "read_store_again"))}
    out = {
        "source": source, "images_path": shown, "n_images": len(ids),
        "crop_px_median": float(np.median(sizes)), "image_size": SIZE, "batch": BATCH,
        "augment": "strong", "decode_cache": False, "pinned": torch.cuda.is_available(),
        "bare_decode_img_s": round(decode, 1), "loaders": loaders, "stage_us": stage_us,
        "read_decode_over_bare_decode": io,  # the I/O part alone: bare decode / (read + decode)
        "target_per_worker_over_bare_decode": 0.7,
        "gpu_feed": gpu_feed(per_worker, None),
        "conditions": run_conditions(torch.get_num_threads(), max(args.workers), "32-true"),
        "cores_note": f"{os.cpu_count()} cores on this machine: with 2 workers the main "
                      "process and the box's other load share them",
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    write_json(out, Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
