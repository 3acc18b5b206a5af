"""What a run read, by content: hashes of input files and of fold assignments.

Stages couple through files under ``artifacts/``; a name says nothing about which folds or which
upstream run produced a file. Each run records the SHA-256 of every input it read (``inputs`` in
its ``provenance.json``), resume/reuse compares those records, and an OOF file used downstream
must carry the same fold assignment as ``folds.parquet`` (compared by :func:`fold_hash`, a hash
of the sorted ``isic_id -> fold`` pairs, so a rewritten but identical fold file still matches).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.data.io import write_json

PROVENANCE_FILE = "provenance.json"
_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (memoised per process by path, size and mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _CACHE[key] = h.hexdigest()
    return _CACHE[key]


def fold_hash(frame: pl.DataFrame) -> str:
    """Content hash of a fold assignment (``isic_id``, ``fold`` columns), order-free."""
    pairs = frame.select(pl.col("isic_id").cast(pl.String), pl.col("fold").cast(pl.Int64)
                         ).sort("isic_id")
    h = hashlib.sha256()
    h.update("\n".join(pairs["isic_id"].to_list()).encode())
    h.update(pairs["fold"].to_numpy().tobytes())
    return h.hexdigest()[:16]


def describe_inputs(paths: dict[str, str | os.PathLike[str]]) -> dict[str, dict[str, str]]:
    """``role -> {path, sha256}`` of every existing input file (missing ones are left out)."""
    return {role: {"path": str(p), "sha256": file_sha256(p)}
            for role, p in paths.items() if Path(p).is_file()}


def changed_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Roles whose file content differs (or that appeared or vanished) between two records."""
    roles = sorted(set(old) | set(new))
    return [r for r in roles
            if (old.get(r) or {}).get("sha256") != (new.get(r) or {}).get("sha256")]


def read_provenance(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The recorded provenance of a run (empty when none was written)."""
    path = Path(run_dir) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_provenance(run_dir: str | os.PathLike[str], inputs: dict[str, Any],
                     **extra: Any) -> Path:
    """Record what a run read (atomically)."""
    return write_json({"inputs": inputs, **extra}, Path(run_dir) / PROVENANCE_FILE)
