"""Image stage throughput and real-data CV: is the loader or the model the bottleneck?

Modes (results go to ``benchmarks/results/vision*.json``):

* default (CPU): images/s the DataLoader delivers (2 workers, train augmentation, HDF5 crops)
  vs images/s a training step (forward + backward + AdamW) and an eval pass consume, for
  resnet18/resnet50 at 64 and 128 px, on tensors already in memory.
* ``--real-dev``: image-only 5-fold CV on ``../shared/real-dev/images`` with the ``real_dev``
  profile of ``configs/image.yaml`` (small backbone, 64 px, random init, ~15 min of CPU);
  reports OOF pAUC and the share of the budget used.
* ``--gpu``: ResNet50 128 px bf16 channels_last on CUDA: training fed by the DataLoader vs the
  same model on a batch already on the GPU.

Usage: ``python benchmarks/bench_vision.py [--real-dev | --gpu] [--quick] [key=value ...]``
(``key=value`` overrides the real_dev profile).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import timm  # every model here is random-init: no hub access
import torch

from isicstack.conditions import run_conditions
from isicstack.data.crops import encode_jpeg, write_crops
from isicstack.data.io import write_json
from isicstack.vision.data import CropDataset, make_loader, train_transform

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ISIC_SHARED", REPO.parent / "shared"))
REAL_IMAGES = SHARED / "real-dev" / "images"
RESULTS = REPO / "benchmarks" / "results"


def env_info(precision: str = "32-true") -> dict[str, Any]:
    """What the figures were measured on (the CPU box is shared, so load matters): the
    conditions every run records (CPU, threads, precision, Python, libraries), the load."""
    info = {"conditions": run_conditions(torch.get_num_threads(), precision=precision),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(), "loadavg_before": os.getloadavg()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def synthetic_hdf5(path: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` lesion-like crops of 100-160 px (the real median is ~130 px) as JPEG in HDF5."""
    rng = np.random.default_rng(seed)
    ids = [f"ISIC_{i:07d}" for i in range(n)]

    def items():
        for i in ids:
            s = int(rng.integers(100, 161))
            yy, xx = np.mgrid[:s, :s]
            skin = rng.integers(150, 210, 3)
            img = np.clip(skin + rng.normal(0, 8, (s, s, 3)), 0, 255)
            r = rng.uniform(0.15, 0.35) * s
            img[(yy - s / 2) ** 2 + (xx - s / 2) ** 2 < r * r] *= rng.uniform(0.3, 0.6)
            yield i, encode_jpeg(img.astype(np.uint8))

    write_crops(path, items())
    return ids


def crop_source(n: int, tmp: Path) -> tuple[Path, list[str], str]:
    """Real-dev crops when present (read in place, never copied), else a synthetic HDF5."""
    if (REAL_IMAGES / "train-image.hdf5").is_file():
        import polars as pl

        ids = pl.read_csv(REAL_IMAGES / "labels.csv")["isic_id"].to_list()[:n]
        return REAL_IMAGES / "train-image.hdf5", ids, "real-dev"
    path = tmp / "bench.hdf5"
    return path, synthetic_hdf5(path, n), "synthetic"


def loader_rate(path: Path, ids: list[str], size: int, workers: int, batch: int,
                pin: bool = False, max_images: int | None = None) -> float:
    """Images/s delivered by a DataLoader with train augmentation (after one warm-up batch)."""
    ds = CropDataset(path, ids, train_transform(size, "strong"))
    loader = make_loader(ds, batch, workers, pin_memory=pin)
    n, t0 = 0, None
    for i, b in enumerate(loader):
        if i == 0:
            t0 = time.perf_counter()
            continue
        n += b["image"].shape[0]
        if max_images and n >= max_images:
            break
    return n / (time.perf_counter() - t0)


def step_rate(model_name: str, size: int, batch: int, steps: int, device: str = "cpu",
              bf16: bool = False, channels_last: bool = False) -> dict[str, float]:
    """Train (fwd+bwd+AdamW) and eval images/s of a timm model on an in-memory batch."""
    model = timm.create_model(model_name, pretrained=False, num_classes=1).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device).float()
    ac = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)

    def train_step() -> None:
        with ac:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(x).squeeze(1).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn: Any, n: int, min_s: float = 3.0) -> float:
        """Images/s over at least ``n`` calls or ``min_s`` seconds, after 2 warm-up calls."""
        for _ in range(2):
            fn()
        _sync(device)
        t0, done = time.perf_counter(), 0
        while done < n or (device == "cuda" and time.perf_counter() - t0 < min_s):
            fn()
            done += 1
            if device == "cuda" and done % 10 == 0:
                _sync(device)
        _sync(device)
        return done * batch / (time.perf_counter() - t0)

    model.train()
    train = timed(train_step, steps)
    model.eval()

    @torch.no_grad()
    def eval_step() -> None:
        with ac:
            model(x)

    return {"train_img_s": round(train, 1), "eval_img_s": round(timed(eval_step, steps), 1)}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_cpu(args: argparse.Namespace) -> dict[str, Any]:
    """(a) loader vs step throughput on CPU."""
    out: dict[str, Any] = {"mode": "cpu", "env": env_info(), "loader": {}, "step": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path, ids, source = crop_source(args.n_images, Path(tmp))
        out["source"], out["n_images"] = source, len(ids)
        for size in args.sizes:
            rate = loader_rate(path, ids, size, args.workers, 64)
            out["loader"][f"{size}px"] = round(rate, 1)
            print(f"loader {size}px, {args.workers} workers, train aug: {rate:.0f} img/s",
                  flush=True)
    default_threads = torch.get_num_threads()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.models:
            for size in args.sizes:
                r = step_rate(name, size, args.batch, args.steps)
                out["step"][f"{name}@{size}px/{threads}thr"] = r
                print(f"{name} {size}px batch {args.batch}, {threads} thread(s): train "
                      f"{r['train_img_s']:.1f} img/s, eval {r['eval_img_s']:.1f} img/s", flush=True)
    torch.set_num_threads(default_threads)
    out["env"]["loadavg_after"] = os.getloadavg()
    return out


def fed_rate(path: Path, ids: list[str], model_name: str, size: int, batch: int, workers: int,
             device: str, bf16: bool = False, channels_last: bool = False,
             max_batches: int | None = None) -> float:
    """Training images/s when every batch comes from the DataLoader (decode + augment)."""
    model = timm.create_model(model_name, pretrained=False, num_classes=1).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ds = CropDataset(path, ids, train_transform(size, "strong"))
    loader = make_loader(ds, batch, workers, drop_last=True, pin_memory=device == "cuda")
    n, t0 = 0, time.perf_counter()
    for i, b in enumerate(loader):
        if i == 3:  # after cudnn autotuning and worker start-up
            _sync(device)
            t0, n = time.perf_counter(), 0
        x = b["image"].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = b["target"].to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(x).squeeze(1).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += x.shape[0]
        if max_batches and i + 1 >= max_batches:
            break
    _sync(device)
    return n / (time.perf_counter() - t0)


def bench_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """(c) loader-fed vs in-memory training of ResNet50 128 px bf16 channels_last on CUDA."""
    if not torch.cuda.is_available():  # a clean skip: `make bench` goes on without a GPU
        print("skip: --gpu needs a CUDA device; vision_gpu.json not written")
        raise SystemExit(0)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    size, batch = 128, args.gpu_batch
    out: dict[str, Any] = {"mode": "gpu", "env": env_info("bf16-mixed"), "model": "resnet50",
                           "image_size": size, "batch": batch, "workers": args.gpu_workers}
    mem = step_rate("resnet50", size, batch, args.steps, "cuda", bf16=True, channels_last=True)
    out["in_memory"] = mem
    print(f"resnet50 128px bf16 CL on GPU tensors: train {mem['train_img_s']:.0f} img/s, "
          f"eval {mem['eval_img_s']:.0f} img/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gpu.hdf5"
        t0 = time.perf_counter()
        ids = synthetic_hdf5(path, args.gpu_images)
        out["hdf5_write_s"] = round(time.perf_counter() - t0, 1)
        out["loader_only_img_s"] = round(
            loader_rate(path, ids, size, args.gpu_workers, batch, pin=True), 1)
        fed = fed_rate(path, ids, "resnet50", size, batch, args.gpu_workers, "cuda",
                       bf16=True, channels_last=True)
    out["loader_fed_train_img_s"] = round(fed, 1)
    out["fed_over_in_memory"] = round(fed / mem["train_img_s"], 3)
    print(f"loader-fed training ({args.gpu_workers} workers): {fed:.0f} img/s "
          f"({out['fed_over_in_memory']:.0%} of in-memory)", flush=True)
    return out


def bench_real_dev(args: argparse.Namespace) -> dict[str, Any] | None:
    """(b) image-only 5-fold CV on the real-dev crops within a CPU budget."""
    from isicstack.settings.layers import load_config, to_dict
    from isicstack.vision.config import ImageConfig
    from isicstack.vision.train import run

    if not (REAL_IMAGES / "train-image.hdf5").is_file():
        return None
    # resume=false: a finished run would be reused and its few seconds timed as the CV
    # paths relative to the repository root (the working directory): none of this machine's
    # paths end up in the results file
    os.chdir(REPO)
    rel = Path(os.path.relpath(REAL_IMAGES, REPO))
    overrides = [f"images_path={rel / 'train-image.hdf5'}", f"labels_path={rel / 'labels.csv'}",
                 "resume=false", *args.overrides]
    cfg: ImageConfig = load_config(ImageConfig, "image", "real_dev", overrides)
    t0 = time.perf_counter()
    [result] = run(cfg)
    seconds = time.perf_counter() - t0
    out = {"mode": "real_dev", "env": env_info(), "config": to_dict(cfg),
           "oof_pauc": result.pauc, "oof_auc": result.auc,
           "mean_fold_pauc": result.fold_pauc_mean,
           "fold_pauc": {str(k): f.pauc for k, f in result.folds.items()},
           "seconds": round(seconds, 1), "budget_s": args.budget_min * 60,
           "budget_used": round(seconds / (args.budget_min * 60), 3)}
    print(f"real-dev image-only CV: OOF pAUC {out['oof_pauc']:.4f} (AUC {out['oof_auc']:.4f}) "
          f"in {seconds / 60:.1f} min = {out['budget_used']:.0%} of {args.budget_min} min",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--real-dev", action="store_true", help="(b) image-only CV on real-dev")
    mode.add_argument("--gpu", action="store_true", help="(c) GPU loader-fed vs in-memory")
    p.add_argument("--quick", action="store_true", help="small scale (a): 64 px, 512 crops")
    p.add_argument("--n-images", type=int, default=1024)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch CPU thread counts for the step measurements")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--budget-min", type=float, default=15.0)
    p.add_argument("--gpu-images", type=int, default=20000)
    p.add_argument("--gpu-workers", type=int, default=12)
    p.add_argument("--gpu-batch", type=int, default=256)
    p.add_argument("--out", default="", help="result file (default by mode)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.n_images = [64], min(args.n_images, 512)
    if args.real_dev:
        res, default = bench_real_dev(args), "vision_real_dev.json"
    elif args.gpu:
        res, default = bench_gpu(args), "vision_gpu.json"
    else:
        res, default = bench_cpu(args), "vision_cpu.json"
    path = Path(args.out) if args.out else RESULTS / default
    if res is None:  # a fresh clone without ../shared: the rest of `make bench` still runs
        print(f"skip: real-dev images not found in {REAL_IMAGES}; {path.name} not written")
        return 0
    write_json(res, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
