"""The conditions a run was made under: machine, threads, precision, library versions.

Why: on this project's CPUs the same image run scores differently when only the thread count or
the box changes (bf16 autocast on CPUs with AVX512-BF16, float32 elsewhere; float sums in
another order), so a comparison of two runs is only a comparison of settings when these match.
Every stage writes this record into its ``provenance.json``; ``isic compare`` refuses (or
marks) pairs whose :data:`COMPARED` keys differ. One writer, read by the benchmarks too.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# distributions whose versions can change a score (numerics, defaults, algorithms)
LIBRARIES: tuple[str, ...] = ("torch", "torchvision", "timm", "pytorch-lightning", "lightgbm",
                              "xgboost", "catboost", "numpy", "polars", "scikit-learn", "scipy")
# the keys two runs must share to be compared as settings: the machine and environment
# (cpu_count and python do not change a score by themselves; the thread count they imply is
# ``threads``). ``precision`` is recorded but follows from the CPU and the stage's recipe (a
# GBDT vs a CNN differ in it by design), so it is not a condition of the comparison.
COMPARED: tuple[str, ...] = ("cpu_model", "cpu_bf16", "gpu", "threads", "loader_workers",
                             "libraries")


def _cpuinfo() -> str:
    """``/proc/cpuinfo`` (empty where there is none: macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there, bf16 autocast
    trains a resnet18 at 64 px ~1.8x faster than float32 (measured on the 2-core box)."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    """The CPU's name (bf16 CPUs train ~3x faster here, and score differently)."""
    names = [ln.split(":", 1)[1].strip() for ln in _cpuinfo().splitlines()
             if ln.startswith("model name")]
    return names[0] if names else platform.processor()


def library_versions() -> dict[str, str]:
    """Installed version of each of :data:`LIBRARIES` (absent ones left out)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def gpu_name() -> str | None:
    """The CUDA device's name when torch is already imported and sees one (never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(0))


def run_conditions(threads: int, loader_workers: int = 0, precision: str = "32-true"
                   ) -> dict[str, Any]:
    """The record of one run: ``threads`` = compute threads actually used (torch or GBDT)."""
    return {"cpu_model": cpu_model(), "cpu_bf16": cpu_has_bf16(), "cpu_count": os.cpu_count(),
            "gpu": gpu_name(), "threads": int(threads), "loader_workers": int(loader_workers),
            "precision": precision, "python": platform.python_version(),
            "libraries": library_versions()}


def differing(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """The :data:`COMPARED` keys whose values differ (every key when a record is missing)."""
    if not a or not b:
        return ["conditions not recorded"]
    return [k for k in COMPARED if a.get(k) != b.get(k)]


def describe(c: dict[str, Any] | None) -> str:
    """One line for tables: CPU (bf16 or float32), threads, loader workers."""
    if not c:
        return "conditions not recorded"
    kind = c.get("gpu") or f"{c.get('cpu_model')} ({'bf16' if c.get('cpu_bf16') else 'no bf16'})"
    return (f"{kind}, {c.get('threads')} thread(s), {c.get('loader_workers')} loader worker(s), "
            f"{c.get('precision')}")
