"""Image stage: a timm CNN per fold, trained by a budget of optimizer steps, scored once per fold.

Why steps, not epochs: an "epoch" here is all positives plus a fresh draw of negatives, whose
size depends on the data; from random init on a CPU what decides learning is the number of
optimizer steps (the first recipe gave a fold ~28 and learned nothing of the image signal).
Each fold trains ``optim.steps`` steps with a one-cycle schedule, validates at most on a cheap
stratified subset (``optim.val_every``; 0 = never), then scores the whole held-out fold once with
its final weights (no selection on its own labels). Crops are decoded once into a cache at input
size when they fit in memory (``data.data_mode``). ``fusion: true`` adds the tabular stage's OOF
score; ``init_from`` starts each fold from an image-only run's model of the same fold.

Every run records the content hashes of what it read (``provenance.json``); ``resume`` continues
an interrupted run only when the config and every input are unchanged, and says which changed.

``runtime.devices=N runtime.strategy=ddp``: Lightning starts N-1 more processes by running the
same command again; every rank runs this stage, trains on its share of each step and predicts
its share of the held-out rows; global rank 0 alone writes (run dir, predictions, metrics,
tracking). ``data.batch_size`` is per device (Lightning's convention): a step trains on
N x batch_size crops.

The config (:class:`~isicstack.vision.config.ImageConfig`, re-exported here) groups its keys
into ``model``, ``optim``, ``data`` and ``runtime``; see :mod:`isicstack.vision.config`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import polars as pl
import timm
import torch

from isicstack.conditions import cpu_has_bf16, run_conditions, usable_cores
from isicstack.data.io import write_parquet
from isicstack.data.layout import image_part_name, oof_path, run_dir, test_pred_path
from isicstack.data.metric import fmt_score, fold_scores
from isicstack.data.provenance import fold_hash
from isicstack.ledger.finish import finish_run
from isicstack.ledger.result import FoldScore, RunResult
from isicstack.vision.backbone import pretrained_overlay
from isicstack.vision.config import ImageConfig
from isicstack.vision.distributed import is_rank_zero
from isicstack.vision.fold import train_fold
from isicstack.vision.model import IMAGE_PART
from isicstack.vision.prepare import build_inputs, open_sources, prepare_run_dir

log = logging.getLogger(__name__)


def output_name(cfg: ImageConfig) -> str:
    """``vision_<name>`` (``name`` defaults to the model name), safe as a file name."""
    return "vision_" + re.sub(r"[^A-Za-z0-9_-]+", "_", cfg.name or cfg.model.name)


def resolve_runtime(cfg: ImageConfig) -> dict[str, Any]:
    """Accelerator, precision and memory format after resolving the ``auto`` values."""
    rc = cfg.runtime
    on_gpu = rc.accelerator in ("gpu", "cuda") or (
        rc.accelerator == "auto" and torch.cuda.is_available())
    precision = rc.precision
    if precision == "auto":
        if on_gpu:
            bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            precision = "bf16-mixed" if bf16 else "16-mixed"
        else:
            precision = "bf16-mixed" if cpu_has_bf16() else "32-true"
    cl = rc.channels_last
    if isinstance(cl, str):
        if cl != "auto":
            raise ValueError(f"runtime.channels_last must be true, false or auto, got {cl!r}")
        cl = on_gpu or precision == "bf16-mixed"
    # CPU: leave a core per loader worker; on a busy 2-core box 2 OpenMP threads ran resnet18
    # 8x slower than 1 (threads wait on each other whenever one core is taken); CPU DDP shares
    # the cores among its processes
    procs = rc.devices if isinstance(rc.devices, int) and not on_gpu else 1
    threads = rc.cpu_threads or max(
        1, (usable_cores() - cfg.data.num_workers * procs) // max(procs, 1))
    return {"on_gpu": on_gpu, "precision": precision, "channels_last": bool(cl),
            "accelerator": rc.accelerator, "cpu_threads": threads}


def conditions(rt: dict[str, Any], loader_workers: int) -> dict[str, Any]:
    """The run's recorded conditions (threads: the torch threads on CPU, 0 on a GPU)."""
    return run_conditions(0 if rt["on_gpu"] else rt["cpu_threads"], loader_workers,
                          rt["precision"], stage="image")


def _check(cfg: ImageConfig) -> None:
    """Fail before any data is read: model name, weights, budget."""
    opt, mc = cfg.optim, cfg.model
    if opt.steps < 1:
        raise ValueError(f"optim.steps must be >= 1, got {opt.steps}")
    if not (0.0 <= opt.ema_decay < 1.0 and 0.0 <= opt.ema_start < 1.0):
        raise ValueError(f"optim.ema_decay and optim.ema_start must be in [0, 1), got "
                         f"{opt.ema_decay} and {opt.ema_start}")
    if cfg.init_from and not cfg.fusion:
        raise ValueError("init_from starts a fused model from an image-only run: set "
                         "fusion=true, or clear init_from")
    if not timm.is_model(mc.name):
        raise ValueError(f"model.name {mc.name!r} is not a timm model "
                         "(see timm.list_models())")
    if mc.pretrained:
        pretrained_overlay(mc.name, mc.pretrained_path)


def write_predictions(artifacts: str, name: str, results: list[dict[str, Any]],
                      column: str = "pred") -> tuple[pl.DataFrame, Path, Path | None]:
    """The folds' ``column`` as ``name``'s OOF file (``isic_id, fold, pred``) and its test file
    (the fold models' mean): the model's own output, or a fused model's ``image_part``."""
    oof = pl.concat([r["oof"].select("isic_id", "fold", pl.col(column).alias("pred"))
                     for r in results])
    oof_file = write_parquet(oof, oof_path(artifacts, name))
    tests = [r["test"] for r in results if r["test"] is not None]
    test_file = None
    if tests:
        test_df = (pl.concat([t.select("isic_id", pl.col(column).alias("pred")) for t in tests])
                   .group_by("isic_id", maintain_order=True).agg(pl.col("pred").mean()))
        test_file = write_parquet(test_df, test_pred_path(artifacts, name))
    return oof, oof_file, test_file


def run(cfg: ImageConfig, callbacks: list[Any] | None = None) -> list[RunResult]:
    """Train every selected fold; write OOF, test predictions, metrics, config, provenance.
    The run's result (one run folder), or none on a DDP rank other than 0 (it writes none)."""
    t0 = time.perf_counter()
    _check(cfg)
    rt = resolve_runtime(cfg)
    if rt["on_gpu"]:
        torch.set_float32_matmul_precision("high")
    else:
        torch.set_num_threads(rt["cpu_threads"])
        if cfg.runtime.devices not in (1, "1"):  # else Lightning's launcher resets it to
            os.environ.setdefault("OMP_NUM_THREADS", str(rt["cpu_threads"]))  # cores / procs
    name = output_name(cfg)
    rdir = run_dir(cfg.artifacts, name)
    inputs = build_inputs(cfg, rdir)
    available = sorted(int(f) for f in inputs.table["fold"].unique())
    folds = list(cfg.folds) or available
    unknown = sorted(set(folds) - set(available))
    if unknown:
        raise ValueError(f"folds {unknown} do not exist; available: {available}")
    if is_rank_zero():  # the other DDP ranks start later, from the same command
        prepare_run_dir(cfg, rdir, inputs.provenance, conditions(rt, cfg.data.num_workers))
    t_sources = time.perf_counter()
    sources = open_sources(cfg, inputs, rt)
    t_sources = time.perf_counter() - t_sources
    if is_rank_zero():
        log.info("%s: %s %dpx, %d rows, folds %s, %d steps/fold, fusion=%s, init_from=%s, "
                 "data=%s, precision=%s%s", name, cfg.model.name, cfg.model.image_size,
                 inputs.table.height, folds, cfg.optim.steps, bool(inputs.tab_cols),
                 cfg.init_from or "-", sources.mode, rt["precision"],
                 "" if rt["on_gpu"] else f", {rt['cpu_threads']} CPU thread(s)")
    results = [train_fold(cfg, inputs, sources, k, rdir, rt, callbacks) for k in folds]
    if not is_rank_zero():  # rank 0 has the same gathered predictions and writes them
        return []
    oof, oof_file, test_file = write_predictions(cfg.artifacts, name, results)
    scored = oof.join(inputs.table.select("isic_id", "target"), on="isic_id", how="left",
                      maintain_order="left")
    y = scored["target"].to_numpy()
    records = {str(r["metrics"]["fold"]): r["metrics"] for r in results}
    pooled, seconds = fold_scores(y, scored["pred"].to_numpy()), round(time.perf_counter() - t0, 1)
    details: dict[str, Any] = {  # keys as before the config's groups: readers of metrics.json
        "model_name": cfg.model.name, "image_size": cfg.model.image_size,
        "steps": cfg.optim.steps, "fusion": bool(inputs.tab_cols), "init_from": cfg.init_from,
        "precision": rt["precision"], "data_mode": sources.mode,
        "world_size": max(r["metrics"].get("world_size", 1) for r in results),
        "fold_records": records,  # each fold's fold.json (steps, resumed_from_step, rows ...)
        "bad_images": sources.bad_ids,
        # where the time went (the profile of `make all`, bench_makeall.py): decoding the crops
        # into memory (or checking them) once, then per fold training and scoring
        "timings": {"crops_seconds": round(t_sources, 1),
                    "train_seconds": round(sum(r["metrics"].get("train_seconds") or 0
                                               for r in results), 1),
                    "score_seconds": round(sum(r["metrics"].get("score_seconds") or 0
                                               for r in results), 1)},
        "oof_path": str(oof_file),
    }
    if test_file is not None:
        details["test_path"] = str(test_file)
    if inputs.tab_cols:  # a fused run: also its image term alone (see predict_step)
        details[IMAGE_PART] = None
        part = image_part_name(name)
        if all(IMAGE_PART in r["oof"].columns for r in results):
            part_oof, part_file, part_test = write_predictions(cfg.artifacts, part, results,
                                                               IMAGE_PART)
            details[IMAGE_PART] = {"name": part, "oof_path": str(part_file),
                                   "test_path": part_test and str(part_test),
                                   **fold_scores(y, part_oof["pred"].to_numpy())}
        else:  # folds finished by a version that did not write the image term
            log.warning("%s: a resumed fold has no %s column; %s not written (rerun with "
                        "resume=false)", name, IMAGE_PART, part)
    result = RunResult(
        "image", name, pooled["pauc"], pooled["auc"], oof.height, int(y.sum()),
        {int(k): FoldScore(m["pauc"], m["auc"], m.get("seconds")) for k, m in records.items()},
        seconds, fold_hash(inputs.table), details)
    result = finish_run(result, rdir, cfg, cfg.artifacts)  # provenance: written at the start
    log.info("%s: OOF pAUC %s AUC %s over %d rows (%.0fs)", name, fmt_score(result.pauc),
             fmt_score(result.auc), oof.height, result.seconds)
    return [result]
