"""The image stage on a float32 CPU: achieved FLOP/s against the box's own GEMM rate.

Most users' CPUs have no AVX512-BF16, so the CNNs train in float32 there (issue 30). A time
says little across boxes; a ratio measured in one run does: the training step's achieved
FLOP/s (FLOPs counted by ``torch.utils.flop_counter`` on the stage's own network, forward +
backward, divided by the step's wall time) over the CPU's float32 GEMM rate (``torch.mm`` on
large square matrices, same threads), and the scoring pass's crops/s beside its own ratio.

Variants, each timed in this process after a warm-up: memory format (contiguous vs
channels_last), batch size (FLOP/s per crop), threads (1 vs all usable cores). ``--isa AVX2``
re-runs the whole measurement in a child process with ``ONEDNN_MAX_CPU_ISA=AVX2``: on a box with
AVX-512 that emulates the float32 kernels of a CPU without it (on a box without AVX-512 it is
the native path again, and the file says so).

    python benchmarks/bench_float32.py            # native, writes benchmarks/results/float32.json
    python benchmarks/bench_float32.py --quick    # fewer variants (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from isicstack.conditions import cpu_flags, run_conditions, usable_cores
from isicstack.data.io import write_json
from isicstack.vision.config import ImageConfig
from isicstack.vision.model import build_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "float32.json"


def timed(fn: Callable[[], None], min_s: float, min_n: int = 3) -> float:
    """Seconds per call of ``fn`` (after one warm-up call), over at least ``min_s`` seconds."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < min_n or time.perf_counter() - t0 < min_s:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def gemm_rate(n: int = 1024, min_s: float = 3.0) -> float:
    """The CPU's float32 matrix-multiply rate in FLOP/s at the current torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / timed(lambda: torch.mm(a, b), min_s)


def _net(channels_last: bool) -> torch.nn.Module:
    """The image-only network of the default recipe (``ImageConfig()``: resnet18, 64 px)."""
    torch.manual_seed(0)
    return build_model(ImageConfig(), n_tab=0, channels_last=channels_last, pretrained=False)


def rate(fn: Callable[[], None], batch: int, min_s: float) -> dict[str, float]:
    """FLOPs of one call of ``fn`` (``torch.utils.flop_counter``), its seconds, crops/s."""
    with FlopCounterMode(display=False) as fc:
        fn()
    flops = fc.get_total_flops()
    sec = timed(fn, min_s)
    return {"batch": batch, "flops_per_step": flops, "seconds_per_step": sec,
            "crops_per_s": batch / sec, "flop_per_s": flops / sec}


def train_step(channels_last: bool, batch: int, size: int, min_s: float) -> dict[str, float]:
    """One AdamW step (forward, BCE loss, backward, update) on a batch already in memory."""
    net = _net(channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 3, size, size), (torch.rand(batch) < 0.1).float()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
        loss.backward()
        opt.step()

    return rate(step, batch, min_s)


def score_pass(channels_last: bool, batch: int, size: int, min_s: float) -> dict[str, float]:
    """Scoring: forward only, no gradient, eval mode."""
    net = _net(channels_last).eval()
    x = torch.randn(batch, 3, size, size)

    def fwd() -> None:
        with torch.inference_mode():
            net(x)

    r = rate(fwd, batch, min_s)
    return {"batch": batch, "flops_per_batch": r["flops_per_step"],
            "crops_per_s": r["crops_per_s"], "flop_per_s": r["flop_per_s"]}


def measure(quick: bool) -> dict[str, Any]:
    """Every variant at every thread count, each ratio against that thread count's GEMM."""
    size = ImageConfig().model.image_size
    min_s = 1.5 if quick else 4.0
    cores = usable_cores()
    gemm: dict[str, float] = {}  # the CPU's float32 GEMM GFLOP/s per thread count
    rows: dict[str, dict[str, Any]] = {}  # "<pass>/t<threads>/cl<0|1>/b<batch>"
    for threads in ([cores] if quick else sorted({1, cores})):
        torch.set_num_threads(threads)
        peak = gemm_rate(min_s=min_s)
        gemm[f"t{threads}"] = peak / 1e9
        for cl in (False, True):
            for name, run, batches in (("train", train_step, [32] if quick else [32, 64]),
                                       ("score", score_pass, [128] if quick else [64, 256])):
                for batch in batches:
                    r = run(cl, batch, size, min_s)
                    rows[f"{name}/t{threads}/cl{int(cl)}/b{batch}"] = {
                        "pass": name, "threads": threads, "channels_last": cl,
                        "gflop_per_s": r["flop_per_s"] / 1e9, "ratio": r["flop_per_s"] / peak,
                        **r}
            print(f"  threads={threads} channels_last={cl}: done", flush=True)
    flags = cpu_flags()
    speedup = {k.replace("/cl1", ""): rows[k]["crops_per_s"] / rows[k.replace("/cl1", "/cl0")][
        "crops_per_s"] for k in rows if "/cl1/" in k}  # channels_last over contiguous
    return {"rows": rows, "channels_last_speedup": speedup, "gemm_gflop_per_s": gemm,
            "image_size": size, "model": ImageConfig().model.name,
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
            "cpu_avx512f": "avx512f" in flags, "cpu_avx2": "avx2" in flags,
            "torch_threads_default": cores,
            "conditions": run_conditions(threads=cores, precision="32-true",
                                         stage="bench_float32")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer variants, shorter timing")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.child:  # the emulated run: print the measurement for the parent
        print("RESULT " + json.dumps(measure(args.quick)))
        return 0
    print("native:", flush=True)
    native = measure(args.quick)
    print("ONEDNN_MAX_CPU_ISA=AVX2:", flush=True)
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    proc = subprocess.run([sys.executable, __file__, "--child", *(["--quick"] * args.quick)],
                          env=env, capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    emulated = json.loads(line[len("RESULT "):])
    note = ("this CPU has no AVX-512: the AVX2 run is the native path measured twice"
            if not native["cpu_avx512f"] else
            "AVX2 emulates a float32 CPU without AVX-512 on this AVX-512 box")
    write_json({"native": native, "avx2": emulated, "note": note}, args.out)
    for name, res in (("native", native), ("avx2", emulated)):
        for r in res["rows"].values():
            print(f"{name:6s} {r['pass']:5s} t={r['threads']} cl={int(r['channels_last'])} "
                  f"b={r['batch']:3d}  {r['crops_per_s']:7.1f} crops/s  "
                  f"{r['flop_per_s'] / 1e9:6.1f} GFLOP/s  ratio {r['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
