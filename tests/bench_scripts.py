"""Load a ``benchmarks/*.py`` script as a module (the scripts are not a package): one loader
for every test of a benchmark's pure functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(stem: str) -> ModuleType:
    """``benchmarks/<stem>.py`` as module ``bench_<stem>`` (registered in ``sys.modules`` so
    that dataclasses can resolve their annotations through it)."""
    spec = importlib.util.spec_from_file_location(f"bench_{stem}", BENCH / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
