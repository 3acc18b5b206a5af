"""The conditions a run was made under: machine, threads, precision, library versions.

Why: on this project's CPUs the same image run scores differently when only the thread count or
the box changes (bf16 autocast on CPUs with AVX512-BF16, float32 elsewhere; float sums in
another order), so a comparison of two runs is only a comparison of settings when these match.
Every stage writes this record into its ``provenance.json``; ``isic compare`` refuses (or
marks) pairs whose machine, Python, libraries or (within one stage) threads or precision
differ. One writer, read by the benchmarks too.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from isicstack.extras import declared

# What two runs must share to be compared as settings. The machine and environment (Python
# included), always; the thread count, loader workers and precision only between runs of one
# stage (a GBDT's threads and a CNN's are different knobs, a GBDT scores in float32 where the
# CNN of a bf16 box trains in bf16: comparing a stack with its image input is not a comparison
# of threads or precision). ``cpu_count`` is recorded, not compared (``threads`` is the knob).
MACHINE: tuple[str, ...] = ("cpu_model", "cpu_bf16", "gpu", "python", "libraries")
SAME_STAGE: tuple[str, ...] = ("threads", "loader_workers", "precision")
# Extras whose libraries fit a model, so their versions can change a score; the others (the
# app, the ledger, the dashboard, a database driver, Grad-CAM's figures) are recorded, not
# compared.
MODEL_EXTRAS: tuple[str, ...] = ("catboost",)


def _cpuinfo() -> str:
    """``/proc/cpuinfo`` (empty where there is none: macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` is missing)."""
    return next((set(ln.split(":", 1)[1].split()) for ln in _cpuinfo().splitlines()
                 if ln.startswith("flags")), set())


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there the image stage
    trains in bf16 autocast (how much faster than float32 is not measured here)."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    """The CPU's name (bf16 CPUs train faster here, and score differently)."""
    names = [ln.split(":", 1)[1].strip() for ln in _cpuinfo().splitlines()
             if ln.startswith("model name")]
    return names[0] if names else platform.processor()


def libraries() -> tuple[str, ...]:
    """The distributions recorded with every run: every one the package declares, extras
    included (:func:`isicstack.extras.declared`, so a new dependency is recorded with no edit
    here), sorted; the dev extra's tools are not."""
    return tuple(sorted(declared()))


def scoring_libraries() -> frozenset[str]:
    """The recorded distributions whose versions can change a score (numerics, defaults,
    algorithms), compared by :func:`differing`: the core dependencies and :data:`MODEL_EXTRAS`."""
    return frozenset(n for n, extra in declared().items() if not extra or extra in MODEL_EXTRAS)


def library_versions() -> dict[str, str]:
    """Installed version of each of :func:`libraries` (absent ones left out), sorted by name."""
    out = {}
    for name in libraries():
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def gpu_name() -> str | None:
    """The CUDA device's name: from torch when it is already imported, else from the NVIDIA
    driver's /proc entry (a GBDT stage must not import torch to say which box it ran on)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("Model:"):
                return line.split(":", 1)[1].strip()
    return None


# the most cores this process's stages may size their threads by (unset: every core of the
# affinity mask); the test suite sets it per pytest-xdist worker so two workers share two cores
CORES_ENV = "ISIC_CORES"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: `taskset`, a container's cpuset),
    not the machine's count: threads sized by ``os.cpu_count()`` on a 1-core share of a 2-core
    box wait on each other (LightGBM ran ~9x slower at 2 threads on 1 free core here).
    ``ISIC_CORES`` caps it (processes sharing a box: the test suite's workers)."""
    try:
        cores = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    cap = os.environ.get(CORES_ENV, "").strip()
    if cap:
        if not cap.isdigit() or int(cap) < 1:
            raise ValueError(f"{CORES_ENV}={cap!r}: expected a whole number of cores >= 1")
        cores = min(cores, int(cap))
    return cores


# the environment variables a launcher sets for a process's global rank, in the order
# Lightning reads them (lightning_fabric's _get_rank: LOCAL_RANK before SLURM_PROCID, which can
# be set without SLURM managing the processes)
RANK_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def launcher_rank() -> int:
    """This process's global rank as its launcher set it (0 when none did): read without
    importing torch, so the chain runner knows whether it is a DDP rank other than 0."""
    for key in RANK_KEYS:
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return 0


def run_conditions(threads: int, loader_workers: int = 0, precision: str = "32-true",
                   stage: str | None = None) -> dict[str, Any]:
    """The record of one run: ``threads`` = compute threads actually used (torch or GBDT),
    ``stage`` = which stage made it (tabular, image, stack)."""
    return {"stage": stage, "cpu_model": cpu_model(), "cpu_bf16": cpu_has_bf16(),
            "cpu_count": usable_cores(), "gpu": gpu_name(), "threads": int(threads),
            "loader_workers": int(loader_workers), "precision": precision,
            "python": platform.python_version(), "libraries": library_versions()}


def differing(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """The keys whose values differ: :data:`MACHINE` always, :data:`SAME_STAGE` when both runs
    come from one stage (or a record does not say which); every key when a record is missing."""
    if not a or not b:
        return ["conditions not recorded"]
    keys = MACHINE + (SAME_STAGE if a.get("stage") == b.get("stage") else ())
    return [k for k in keys if _value(a, k, b) != _value(b, k, a)]


def _value(rec: dict[str, Any], key: str, other: dict[str, Any]) -> Any:
    """``rec[key]``; for ``libraries`` only those that can change a score
    (:func:`scoring_libraries`) and that both records list: the recorded set grows with the
    declared dependencies (an older run lists fewer), and a library one record does not list is
    unknown there, not different."""
    value = rec.get(key)
    if key == "libraries" and isinstance(value, dict) and isinstance(other.get(key), dict):
        scoring = scoring_libraries()
        return {k: v for k, v in value.items() if k in other[key] and k in scoring}
    return value


def describe(c: dict[str, Any] | None) -> str:
    """One line for tables: CPU (bf16 or float32), threads, loader workers."""
    if not c:
        return "conditions not recorded"
    kind = c.get("gpu") or f"{c.get('cpu_model')} ({'bf16' if c.get('cpu_bf16') else 'no bf16'})"
    return (f"{kind}, {c.get('threads')} thread(s), {c.get('loader_workers')} loader worker(s), "
            f"{c.get('precision')}")
