"""Runs read back for a paired comparison: a stage's OOF file, or an ``isic evaluate`` output.

A run is named ``<artifacts>:<name>`` (``artifacts/bench_pipeline/seed0:stack``; the artifacts
part may be a glob with one brace group, one run per folder:
``'artifacts/bench_pipeline/seed{0,1,2}:stack'``), read as
its ``oof/<name>.parquet`` aligned onto that folder's fold file (``folds.parquet``, or
``folds_images.parquet`` of an image-only run), with the conditions from its
``runs/<name>/provenance.json``. An ``isic evaluate`` output is a name under
``<artifacts>/evals/`` or a path to its JSON: one run per fold seed and model.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import polars as pl

from isicstack.data.io import DataError
from isicstack.data.layout import IMAGE_PART_SUFFIX, folds_path, oof_path, run_dir
from isicstack.data.predictions import load_oof
from isicstack.data.provenance import fold_hash, read_provenance
from isicstack.evaluation.paired import Scored

IMAGE_FOLDS = "folds_images.parquet"  # image-only mode's own folds (vision/fold_table.py)


def scored(label: str, folds: pl.DataFrame, pred: np.ndarray, conditions: dict | None
           ) -> Scored:
    """A :class:`Scored` from a fold table (``isic_id, patient_id, target, fold``) + scores."""
    return Scored(label, fold_hash(folds), folds["target"].to_numpy().astype(np.int64),
                  folds["fold"].to_numpy(), folds["patient_id"].cast(pl.String).to_numpy(),
                  np.asarray(pred, dtype=np.float64), conditions)


def load_stage_run(artifacts: Path, name: str) -> Scored:
    """``artifacts/oof/<name>.parquet`` on the folds it was made on, with its conditions."""
    path = oof_path(artifacts, name)
    errors = []
    for candidate in (folds_path(artifacts), artifacts / IMAGE_FOLDS):
        if not candidate.is_file():
            continue
        folds = pl.read_parquet(candidate)
        try:
            pred = load_oof(path, folds)
        except DataError as err:
            errors.append(str(err))
            continue
        # a fused run's image term alone is written by that run: its conditions are the run's
        owner = name.removesuffix(IMAGE_PART_SUFFIX)
        conditions = read_provenance(run_dir(artifacts, owner)).get("conditions")
        return scored(f"{artifacts}:{name}", folds, pred, conditions)
    raise DataError(f"{path}: no fold file in {artifacts} matches it"
                    + (f" ({'; '.join(errors)})" if errors else ""))


def expand(spec: str) -> list[Scored]:
    """Every run of ``<artifacts glob>:<name>``, sorted by folder."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ValueError(f"run {spec!r}: expected <artifacts folder or glob>:<oof name>")
    folders = sorted({p for pattern in braces(where) for p in glob.glob(pattern)
                      if Path(p).is_dir()})
    if not folders:
        raise FileNotFoundError(f"run {spec!r}: no folder matches {where!r}")
    return [load_stage_run(Path(f), name) for f in folders]


def braces(pattern: str) -> list[str]:
    """``a/seed{0,1}`` -> ``[a/seed0, a/seed1]`` (one brace group; glob has none)."""
    head, sep, rest = pattern.partition("{")
    if not sep or "}" not in rest:
        return [pattern]
    body, _, tail = rest.partition("}")
    return [f"{head}{part}{tail}" for part in body.split(",")]


def load_eval(path: Path, model: str) -> list[Scored]:
    """One run per fold seed of ``model`` from an ``isic evaluate`` output."""
    doc = json.loads(path.read_text())
    seeds = doc.get("oof_files")
    if not seeds:
        raise DataError(f"{path}: written by an older `isic evaluate` without per-seed OOF "
                        "files; rerun it to compare")
    out = []
    for seed, rel in seeds.items():
        frame = pl.read_parquet(path.parent / rel)
        if model not in frame.columns:
            raise DataError(f"{path}: model {model!r} not evaluated (has "
                            f"{[c for c in frame.columns if c not in FOLD_COLS]})")
        out.append(scored(f"{doc['name']}:{model}@seed{seed}", frame.select(FOLD_COLS),
                          frame[model].to_numpy(), doc.get("conditions")))
    return out


FOLD_COLS = ["isic_id", "patient_id", "target", "fold"]
