"""The one GPU benchmark, sized for < 8 minutes on one H200 (16 CPU cores).

1. ``bench_vision.py --gpu``: ResNet50 128 px bf16 channels_last, training on a batch already
   on the GPU vs fed by the DataLoader (synthetic HDF5, ``--gpu-workers`` workers).
2. One loader worker's images/s on this machine's CPU (``bench_loader.py``'s path: HDF5 ->
   decode -> strong augmentation -> batch), hence the loader cores the GPU's training rate needs.
3. The real-dev image-only CV at GPU scale: the ``gpu`` profile of ``configs/image.yaml``
   (ResNet50 128 px, bf16, 600 steps x 128 crops a fold, 5 folds), skipped with its reason when
   the crops are absent or the time left is short.

Writes ``benchmarks/results/gpu.json`` (and ``vision_gpu.json``), and fills the GPU rate and
the loader cores into ``loader.json``'s ``gpu_feed``. Without CUDA it prints why and exits 0,
writing nothing. ``--copy-to DIR`` also copies the results files there (``$OUT`` on a lent
machine, where the tree's own copy does not come back).

On a lent H200 (python3 3.12 with torch, timm, lightning, h5py; no polars, no simplejpeg): here,
``echo /.whl/ >> .git/info/exclude; echo /.device_shared/ >> .git/info/exclude``, download the
cp312 manylinux wheels of polars and simplejpeg into ``.whl`` (the device README's pip command)
and ``mkdir -p .device_shared/real-dev && cp -r ../shared/real-dev/images .device_shared/real-dev/``
(22 MB); then run with ``carry=[".whl", ".device_shared"]`` and ``timeout_s=600``::

    python3 -m pip install -q --no-index --no-deps --target .whl/site .whl/*.whl &&
    PYTHONPATH=.whl/site ISIC_SHARED=.device_shared PYTHONUNBUFFERED=1 \
    python3 benchmarks/bench_gpu.py --copy-to $OUT

and copy ``gpu.json``, ``vision_gpu.json`` and ``loader.json`` from the returned files into
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import isicstack  # noqa: F401
except ImportError:  # a bare machine: the repository root is the package, under its own name
    _link = Path(tempfile.mkdtemp()) / "isicstack"
    _link.symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(_link.parent))

import torch  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
BUDGET_S = 450.0  # of the 8 minutes: the rest is interpreter and CUDA start-up
CV_NEED_S = 240.0  # the gpu profile's 5 folds, with margin


def loader_cores(gpu_img_s: float, per_worker_img_s: float) -> int:
    """Loader workers (one core each) whose images/s reach the GPU's training rate."""
    if per_worker_img_s <= 0:
        raise ValueError(f"per-worker rate must be > 0, got {per_worker_img_s}")
    return math.ceil(gpu_img_s / per_worker_img_s)


def cv_skip_reason(images: Path, elapsed_s: float, budget_s: float = BUDGET_S) -> str | None:
    """Why the real-dev CV cannot run now (None: it can)."""
    if not (images / "train-image.hdf5").is_file() or not (images / "labels.csv").is_file():
        return ("real-dev crops not found (real-dev/images/train-image.hdf5 and labels.csv "
                "under ISIC_SHARED, default ../shared)")
    if budget_s - elapsed_s < CV_NEED_S:
        return (f"{budget_s - elapsed_s:.0f}s left of the {budget_s:.0f}s budget, "
                f"{CV_NEED_S:.0f}s needed")
    return None


def fill_loader_json(path: Path, gpu_img_s: float, source: str) -> dict[str, Any] | None:
    """Put the GPU rate and the loader cores it needs into ``loader.json``'s ``gpu_feed``
    (cores at the per-worker rate measured there, on the CPU box)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    feed = data.setdefault("gpu_feed", {})
    feed["gpu_train_img_s"] = round(gpu_img_s, 1)
    feed["gpu_source"] = source
    feed["loader_cores"] = loader_cores(gpu_img_s, float(feed["per_worker_img_s"]))
    path.write_text(json.dumps(data, indent=2) + "\n")
    return feed


def worker_rate(n: int, workers: int = 1) -> dict[str, Any]:
    """bench_loader's path on this machine's CPU: images/s of ``workers`` workers, one pass."""
    from bench_loader import loader_rate
    from bench_vision import synthetic_hdf5

    from isicstack.vision.data import CropDataset, HDF5Source, train_transform

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "worker.hdf5"
        ids = synthetic_hdf5(path, n)
        rate = loader_rate(CropDataset(HDF5Source(path), ids, train_transform(128, "strong")),
                           workers)
    return {"workers": workers, "n_images": n, "img_s": round(rate, 1),
            "per_worker_img_s": round(rate / workers, 1)}


def real_dev_cv(images: Path) -> dict[str, Any]:
    """The ``gpu`` profile's image-only CV on the real-dev crops (paths relative to the repo)."""
    from isicstack.settings.layers import load_config, to_dict
    from isicstack.vision.config import ImageConfig
    from isicstack.vision.train import run

    os.chdir(REPO)
    rel = Path(os.path.relpath(images, REPO))
    cfg: ImageConfig = load_config(ImageConfig, "image", "gpu", [
        f"images_path={rel / 'train-image.hdf5'}", f"labels_path={rel / 'labels.csv'}",
        "resume=false"])
    t0 = time.perf_counter()
    [m] = run(cfg)
    seconds = time.perf_counter() - t0
    crops = len(m.folds) * cfg.optim.steps * cfg.data.batch_size
    return {"config": to_dict(cfg), "oof_pauc": m.pauc, "oof_auc": m.auc,
            "mean_fold_pauc": m.fold_pauc_mean,
            "fold_pauc": {str(k): f.pauc for k, f in m.folds.items()},
            "precision": m.details["precision"], "seconds": round(seconds, 1),
            "trained_crops": crops, "end_to_end_img_s": round(crops / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu-images", type=int, default=12000)
    p.add_argument("--gpu-workers", type=int, default=12)
    p.add_argument("--worker-images", type=int, default=3000)
    p.add_argument("--skip-cv", action="store_true")
    p.add_argument("--copy-to", default="", help="also copy the results files here ($OUT)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("skip: no CUDA device (torch.cuda.is_available() is false); "
              "benchmarks/results/gpu.json not written")
        return 0
    import bench_vision

    from isicstack.conditions import run_conditions
    from isicstack.data.io import write_json

    t0 = time.perf_counter()
    vision_file = RESULTS / "vision_gpu.json"
    bench_vision.main(["--gpu", "--gpu-images", str(args.gpu_images), "--gpu-workers",
                       str(args.gpu_workers), "--out", str(vision_file)])
    vision = json.loads(vision_file.read_text())
    gpu_rate = float(vision["in_memory"]["train_img_s"])
    worker = worker_rate(args.worker_images)
    out: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0), "model": "resnet50 128px bf16 channels_last",
        "in_memory": vision["in_memory"], "loader_fed_train_img_s":
            vision["loader_fed_train_img_s"], "fed_over_in_memory": vision["fed_over_in_memory"],
        "loader_only_img_s": vision["loader_only_img_s"], "gpu_workers": args.gpu_workers,
        "loader_worker": worker,
        "loader_cores": loader_cores(gpu_rate, worker["per_worker_img_s"]),
        "conditions": run_conditions(0, args.gpu_workers, "bf16-mixed"),
        "cpu_count": os.cpu_count()}
    print(f"GPU trains {gpu_rate:.0f} img/s; one loader worker here gives "
          f"{worker['per_worker_img_s']:.0f}: {out['loader_cores']} loader cores", flush=True)
    images = bench_vision.REAL_IMAGES
    reason = "--skip-cv" if args.skip_cv else cv_skip_reason(images, time.perf_counter() - t0)
    out["real_dev_cv"] = {"skipped": reason} if reason else real_dev_cv(images)
    print(f"real-dev CV at GPU scale: {out['real_dev_cv']}", flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out, RESULTS / "gpu.json")
    feed = fill_loader_json(RESULTS / "loader.json", gpu_rate,
                            "benchmarks/results/gpu.json in_memory.train_img_s")
    print(f"wrote {RESULTS / 'gpu.json'}; loader.json gpu_feed: {feed}")
    if args.copy_to:
        for name in ("gpu.json", "vision_gpu.json", "loader.json"):
            if (RESULTS / name).is_file():
                shutil.copy(RESULTS / name, Path(args.copy_to) / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
