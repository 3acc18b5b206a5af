"""Image stage: a timm CNN per fold, trained by a budget of optimizer steps, scored once per fold.

Why steps, not epochs: an "epoch" here is all positives plus a fresh draw of negatives, whose
size depends on the data; from random init on a CPU what decides learning is the number of
optimizer steps (the first recipe gave a fold ~28 and learned nothing of the image signal).
Each fold trains ``steps`` steps with a one-cycle schedule, validates at most on a cheap
stratified subset (``val_every``; 0 = never), then scores the whole held-out fold once with its
final weights (no selection on its own labels). Crops are decoded once into a cache at input
size when they fit in memory (``data_mode``). ``fusion: true`` adds the tabular stage's OOF
score; ``init_from`` starts each fold from an image-only run's model of the same fold.

Every run records the content hashes of what it read (``provenance.json``); ``resume`` continues
an interrupted run only when the config and every input are unchanged, and says which changed.

``devices=N strategy=ddp``: Lightning starts N-1 more processes by running the same command
again; every rank runs this stage, trains on its share of each step and predicts its share of
the held-out rows; global rank 0 alone writes (run dir, predictions, metrics, tracking).
``batch_size`` is per device (Lightning's convention): a step trains on N x batch_size crops.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import timm
import torch

from isicstack.conditions import cpu_has_bf16, run_conditions, usable_cores
from isicstack.config import save_config
from isicstack.data.io import write_json, write_parquet
from isicstack.data.layout import image_part_name, oof_path, run_dir, test_pred_path
from isicstack.data.metric import fmt_score, fold_scores
from isicstack.data.provenance import fold_hash
from isicstack.tracking import log_run
from isicstack.vision.distributed import is_rank_zero
from isicstack.vision.fold import train_fold
from isicstack.vision.model import IMAGE_PART, pretrained_overlay
from isicstack.vision.setup import build_inputs, open_sources, prepare_run_dir

log = logging.getLogger(__name__)


@dataclass
class ImageConfig:
    """Image stage settings (``configs/image.yaml``); see the module docstring for the why."""

    data_dir: str = "auto"  # auto: real Kaggle files if present, else datasets/synthetic/<profile>
    artifacts: str = "artifacts"   # reads folds and tabular scores; writes runs/, oof/, test/
    profile: str = "default"       # config profile in use (set by --profile)
    model_name: str = "resnet18"   # timm model (test_resnet: timm's tiny test net)
    pretrained: bool = False       # timm's default weights (hub or local cache)
    pretrained_path: str = ""      # offline weights file or folder for timm
    image_size: int = 64           # model input side in px
    batch_size: int = 32           # crops per optimizer step
    steps: int = 240               # optimizer steps per fold
    lr: float = 1e-3               # peak AdamW learning rate
    weight_decay: float = 1e-2     # AdamW weight decay
    backbone_lr_mult: float = 1.0  # backbone lr = lr x this (pretrained: ~0.1)
    schedule: Literal["onecycle", "cosine"] = "onecycle"  # cosine suits pretrained weights
    warmup_frac: float = 0.25      # share of the steps warming up
    neg_ratio: float = 10.0        # negatives per positive, drawn anew each pass
    pos_weight: float = 1.0        # loss weight of positive rows
    augment: Literal["none", "flips", "strong"] = "flips"  # strong: resized crop, flips, jitter
    drop_rate: float = 0.0         # dropout before the classifier
    val_every: int = 0             # steps between subset validations (0: none)
    val_neg_ratio: float = 10.0    # negatives per positive in that subset
    fusion: bool = True            # add the tabular score to the model
    tabular_name: str = "lgbm"     # tabular run whose OOF/test scores are fused
    init_from: str = ""            # image-only run (vision_<name>) to start each fold from
    data_mode: Literal["auto", "memory", "stream"] = "auto"  # stream: decode per sample from HDF5
    cache_max_gb: float = 4.0      # auto: decode-once cache when it fits in this much memory
    on_bad_image: Literal["error", "skip"] = "error"  # skip: leave a bad crop out, list it
    num_workers: int = 0           # DataLoader decode workers
    cpu_threads: int = 0           # 0 = cores minus loader workers
    precision: str = "auto"        # auto: bf16-mixed on GPUs and bf16 CPUs, else 32-true
    channels_last: bool | str = "auto"  # NHWC memory format; auto: on GPU or with bf16
    devices: int | str = 1         # Lightning devices (processes); batch_size is per device
    strategy: str = "auto"         # Lightning strategy (ddp: one process per device)
    accelerator: str = "auto"      # auto | cpu | gpu
    folds: list[int] = field(default_factory=list)  # folds to train; empty = every fold
    n_folds: int = 5               # image-only mode: folds made from labels_path
    tta_flip: bool = False         # also score a horizontally flipped pass, averaged
    ema_decay: float = 0.0         # > 0: score with an EMA of the weights (Lightning callback)
    ema_start: float = 0.5         # share of the steps after which the EMA starts
    color_constancy: bool = False  # Shades of Gray on every crop
    seed: int = 42                 # seed of init and sampling (+ fold)
    name: str = ""                 # outputs vision_<name>; empty = model_name
    images_path: str = ""          # image-only mode: an HDF5 of crops
    labels_path: str = ""          # image-only mode: CSV of isic_id, target[, patient_id]
    resume: bool = True            # continue unfinished folds when config and inputs are unchanged
    predict_test: bool = True  # false: OOF only (tuning trials)


def output_name(cfg: ImageConfig) -> str:
    """``vision_<name>`` (``name`` defaults to the model name), safe as a file name."""
    return "vision_" + re.sub(r"[^A-Za-z0-9_-]+", "_", cfg.name or cfg.model_name)


def resolve_runtime(cfg: ImageConfig) -> dict[str, Any]:
    """Accelerator, precision and memory format after resolving the ``auto`` values."""
    on_gpu = cfg.accelerator in ("gpu", "cuda") or (
        cfg.accelerator == "auto" and torch.cuda.is_available())
    precision = cfg.precision
    if precision == "auto":
        if on_gpu:
            bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            precision = "bf16-mixed" if bf16 else "16-mixed"
        else:
            precision = "bf16-mixed" if cpu_has_bf16() else "32-true"
    cl = cfg.channels_last
    if isinstance(cl, str):
        if cl != "auto":
            raise ValueError(f"channels_last must be true, false or auto, got {cl!r}")
        cl = on_gpu or precision == "bf16-mixed"
    # CPU: leave a core per loader worker; on a busy 2-core box 2 OpenMP threads ran resnet18
    # 8x slower than 1 (threads wait on each other whenever one core is taken); CPU DDP shares
    # the cores among its processes
    procs = cfg.devices if isinstance(cfg.devices, int) and not on_gpu else 1
    threads = cfg.cpu_threads or max(
        1, (usable_cores() - cfg.num_workers * procs) // max(procs, 1))
    return {"on_gpu": on_gpu, "precision": precision, "channels_last": bool(cl),
            "accelerator": cfg.accelerator, "cpu_threads": threads}


def conditions(rt: dict[str, Any], loader_workers: int) -> dict[str, Any]:
    """The run's recorded conditions (threads: the torch threads on CPU, 0 on a GPU)."""
    return run_conditions(0 if rt["on_gpu"] else rt["cpu_threads"], loader_workers,
                          rt["precision"], stage="image")


def _check(cfg: ImageConfig) -> None:
    """Fail before any data is read: model name, weights, budget."""
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    if not (0.0 <= cfg.ema_decay < 1.0 and 0.0 <= cfg.ema_start < 1.0):
        raise ValueError(f"ema_decay and ema_start must be in [0, 1), got {cfg.ema_decay} and "
                         f"{cfg.ema_start}")
    if cfg.init_from and not cfg.fusion:
        raise ValueError("init_from starts a fused model from an image-only run: set "
                         "fusion=true, or clear init_from")
    if not timm.is_model(cfg.model_name):
        raise ValueError(f"model_name {cfg.model_name!r} is not a timm model "
                         "(see timm.list_models())")
    if cfg.pretrained:
        pretrained_overlay(cfg.model_name, cfg.pretrained_path)


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


def run(cfg: ImageConfig, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train every selected fold; write OOF, test predictions, metrics, config, provenance."""
    t0 = time.perf_counter()
    _check(cfg)
    rt = resolve_runtime(cfg)
    if rt["on_gpu"]:
        torch.set_float32_matmul_precision("high")
    else:
        torch.set_num_threads(rt["cpu_threads"])
        if cfg.devices not in (1, "1"):  # else Lightning's launcher resets it to cores / procs
            os.environ.setdefault("OMP_NUM_THREADS", str(rt["cpu_threads"]))
    name = output_name(cfg)
    rdir = run_dir(cfg.artifacts, name)
    inputs = build_inputs(cfg, rdir)
    available = sorted(int(f) for f in inputs.table["fold"].unique())
    folds = list(cfg.folds) or available
    unknown = sorted(set(folds) - set(available))
    if unknown:
        raise ValueError(f"folds {unknown} do not exist; available: {available}")
    if is_rank_zero():  # the other DDP ranks start later, from the same command
        prepare_run_dir(cfg, rdir, inputs.provenance, conditions(rt, cfg.num_workers))
    t_sources = time.perf_counter()
    sources = open_sources(cfg, inputs, rt)
    t_sources = time.perf_counter() - t_sources
    if is_rank_zero():
        log.info("%s: %s %dpx, %d rows, folds %s, %d steps/fold, fusion=%s, init_from=%s, "
                 "data=%s, precision=%s%s", name, cfg.model_name, cfg.image_size,
                 inputs.table.height, folds, cfg.steps, bool(inputs.tab_cols),
                 cfg.init_from or "-", sources.mode, rt["precision"],
                 "" if rt["on_gpu"] else f", {rt['cpu_threads']} CPU thread(s)")
    results = [train_fold(cfg, inputs, sources, k, rdir, rt, callbacks) for k in folds]
    if not is_rank_zero():  # rank 0 has the same gathered predictions and writes them
        return {"name": name, "rank_zero": False}
    oof, oof_file, test_file = write_predictions(cfg.artifacts, name, results)
    scored = oof.join(inputs.table.select("isic_id", "target"), on="isic_id", how="left",
                      maintain_order="left")
    y = scored["target"].to_numpy()
    metrics: dict[str, Any] = {
        "name": name, "model_name": cfg.model_name, "image_size": cfg.image_size,
        "steps": cfg.steps, "fusion": bool(inputs.tab_cols), "init_from": cfg.init_from,
        "precision": rt["precision"], "data_mode": sources.mode,
        "world_size": max(r["metrics"].get("world_size", 1) for r in results),
        "folds": {str(r["metrics"]["fold"]): r["metrics"] for r in results},
        "oof": {**fold_scores(y, scored["pred"].to_numpy()), "n": oof.height,
                "n_pos": int(y.sum())},
        "bad_images": sources.bad_ids,
        "fold_hash": fold_hash(inputs.table),
        "seconds": round(time.perf_counter() - t0, 1),
        # where the time went (the profile of `make all`, bench_makeall.py): decoding the crops
        # into memory (or checking them) once, then per fold training and scoring
        "timings": {"crops_seconds": round(t_sources, 1),
                    "train_seconds": round(sum(r["metrics"].get("train_seconds") or 0
                                               for r in results), 1),
                    "score_seconds": round(sum(r["metrics"].get("score_seconds") or 0
                                               for r in results), 1)},
        "oof_path": str(oof_file),
    }
    fold_pauc = [r["metrics"]["pauc"] for r in results if r["metrics"]["pauc"] is not None]
    metrics["mean_fold_pauc"] = float(np.mean(fold_pauc)) if fold_pauc else None
    if test_file is not None:
        metrics["test_path"] = str(test_file)
    if inputs.tab_cols:  # a fused run: also its image term alone (see predict_step)
        metrics[IMAGE_PART] = None
        part = image_part_name(name)
        if all(IMAGE_PART in r["oof"].columns for r in results):
            part_oof, part_file, part_test = write_predictions(cfg.artifacts, part, results,
                                                               IMAGE_PART)
            metrics[IMAGE_PART] = {"name": part, "oof_path": str(part_file),
                                   "test_path": part_test and str(part_test),
                                   **fold_scores(y, part_oof["pred"].to_numpy())}
        else:  # folds finished by a version that did not write the image term
            log.warning("%s: a resumed fold has no %s column; %s not written (rerun with "
                        "resume=false)", name, IMAGE_PART, part)
    write_json(metrics, rdir / "metrics.json")
    save_config(cfg, Path(rdir) / "config.yaml")
    log_run("image", rdir, cfg.artifacts)
    log.info("%s: OOF pAUC %s AUC %s over %d rows (%.0fs)", name, fmt_score(metrics["oof"]["pauc"]),
             fmt_score(metrics["oof"]["auc"]), oof.height, metrics["seconds"])
    return metrics
