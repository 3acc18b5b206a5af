"""One way for benchmark scripts to run a command they time: its output into a log, its wall
seconds, optionally the peak RSS of its whole process tree, and a loud failure naming the log
(``bench_makeall.py`` times `make` targets on fresh clones, ``bench_fullsize.py`` the stages
at full size)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# run a command, then print the largest peak RSS (KiB) of its process tree as the last line
RSS_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def run_logged(cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None,
               append: bool = False, rss: bool = False) -> dict[str, Any]:
    """Run ``cmd`` in ``cwd`` with stdout and stderr to ``log`` (appended, under a header
    line, with ``append``); ``{"seconds"}`` plus, with ``rss``, ``peak_rss_mib`` (the largest
    resident set of any process it started) and the load average at its end."""
    run = [sys.executable, "-c", RSS_WRAPPER, *cmd] if rss else cmd
    t0 = time.perf_counter()
    with log.open("a" if append else "w") as fh:
        if append:
            fh.write(f"== {' '.join(cmd)}\n")
            fh.flush()
        done = subprocess.run(run, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    out: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 1)}
    if done.returncode:
        sys.stderr.write(log.read_text()[-4000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}); log: {log}")
    if rss:
        out["peak_rss_mib"] = round(int(log.read_text().strip().splitlines()[-1]) / 1024)
        out["loadavg_end"] = os.getloadavg()
    return out


def fresh_clone(rev: str, dest: Path, root: Path) -> str:
    """``git clone`` of the repository at ``root`` into ``dest``, checked out at ``rev``
    (committed tree only: no venv, data or artifacts); its short commit hash."""
    subprocess.run(["git", "clone", "-q", str(root), str(dest)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=dest, check=True)
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=dest, check=True,
                          capture_output=True, text=True).stdout.strip()
