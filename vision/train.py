"""Image stage: train a timm CNN per fold, write OOF and test predictions in the keyed layout.

``run(cfg)`` trains a fixed number of epochs per fold (no early stopping on a noisy pAUC),
validates on the whole held-out fold each epoch, and by default predicts with the LAST epoch's
weights so the OOF file is not optimistically selected on its own labels (``use_checkpoint:
best`` is available). Every fold checkpoints ``last.ckpt`` and stores its predictions, so an
interrupted run started again with ``resume: true`` skips finished folds and continues the
unfinished one from its last epoch.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import timm
import torch
import yaml
from pytorch_lightning.callbacks import Callback

from isicstack.config import save_config, to_dict
from isicstack.data.folds import read_folds
from isicstack.data.io import write_json, write_parquet
from isicstack.data.layout import (
    TEST_IMAGES,
    TEST_META,
    TRAIN_IMAGES,
    oof_path,
    resolve_data_dir,
    run_dir,
    test_pred_path,
)
from isicstack.vision.fold import fmt, scores, train_fold
from isicstack.vision.inputs import (
    FUSION_FILE,
    TAB_COLS,
    TrainInputs,
    add_fusion,
    image_only_folds,
    load_test_rows,
    require_crops,
)
from isicstack.vision.model import find_pretrained

log = logging.getLogger(__name__)

# keys that may change between an interrupted run and its resumption
RESUME_FREE_KEYS = {"num_workers", "cpu_threads", "devices", "strategy", "accelerator",
                    "resume", "folds", "max_val_batches", "artifacts"}


@dataclass
class ImageConfig:
    """Image stage settings (``configs/image.yaml``); see the module docstring for the why."""

    data_dir: str = "auto"
    artifacts: str = "artifacts"
    profile: str = "default"
    model_name: str = "resnet50"
    pretrained: bool = False
    pretrained_path: str = ""
    image_size: int = 128
    batch_size: int = 64
    epochs: int = 3
    lr: float = 1e-3
    weight_decay: float = 1e-2
    backbone_lr_mult: float = 1.0
    warmup_frac: float = 0.1
    neg_ratio: float = 5.0
    pos_weight: float = 1.0
    fusion: bool = True
    tabular_name: str = "lgbm"
    num_workers: int = 2
    cpu_threads: int = 0
    precision: str = "auto"
    channels_last: bool | str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    folds: list[int] = field(default_factory=list)
    n_folds: int = 5
    tta_flip: bool = False
    color_constancy: bool = False
    use_checkpoint: Literal["last", "best"] = "last"
    seed: int = 42
    name: str = ""
    images_path: str = ""
    labels_path: str = ""
    max_train_batches: int | None = None
    max_val_batches: int | None = None
    resume: bool = True
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
        bf16 = on_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        precision = ("bf16-mixed" if bf16 else "16-mixed") if on_gpu else "32-true"
    cl = cfg.channels_last
    if isinstance(cl, str):
        if cl != "auto":
            raise ValueError(f"channels_last must be true, false or auto, got {cl!r}")
        cl = on_gpu
    # CPU: leave a core per loader worker; on a busy 2-core box 2 OpenMP threads ran resnet18
    # 8x slower than 1 (threads wait on each other whenever one core is taken)
    threads = cfg.cpu_threads or max(1, (os.cpu_count() or 1) - cfg.num_workers)
    return {"on_gpu": on_gpu, "precision": precision, "channels_last": bool(cl),
            "accelerator": cfg.accelerator, "cpu_threads": threads}


def build_inputs(cfg: ImageConfig) -> tuple[TrainInputs, pl.DataFrame | None, Path | None]:
    """Train table (folds + optional fusion features) and test rows of this configuration."""
    if cfg.images_path or cfg.labels_path:  # image-only mode
        if not (cfg.images_path and cfg.labels_path):
            raise ValueError("image-only mode needs both images_path and labels_path")
        if cfg.fusion:
            raise ValueError("image-only mode has no tabular scores: set fusion=false")
        images = Path(cfg.images_path)
        table = image_only_folds(Path(cfg.labels_path), images, Path(cfg.artifacts),
                                 cfg.n_folds, cfg.seed)
        return TrainInputs(table, images), None, None
    data_dir = resolve_data_dir(cfg.data_dir, cfg.profile)
    images = data_dir / TRAIN_IMAGES
    table = read_folds(cfg.artifacts).select("isic_id", "patient_id", "target", "fold")
    require_crops(table["isic_id"], images, "train")
    found = load_test_rows(data_dir, TEST_META, TEST_IMAGES) if cfg.predict_test else None
    test, test_images = found if found else (None, None)
    if not cfg.fusion:
        return TrainInputs(table, images), test, test_images
    table, test, stats = add_fusion(table, test, cfg.artifacts, cfg.tabular_name)
    # offline inference standardises the test scores with these train-OOF statistics
    write_json({"tabular_name": cfg.tabular_name, "columns": list(TAB_COLS), **stats},
               run_dir(cfg.artifacts, output_name(cfg)) / FUSION_FILE)
    log.info("fusion: %s from %s (mean %s, std %s)", TAB_COLS, cfg.tabular_name,
             np.round(stats["mean"], 3), np.round(stats["std"], 3))
    return TrainInputs(table, images, TAB_COLS), test, test_images


def _prepare_run_dir(cfg: ImageConfig, rdir: Path) -> None:
    """Start fresh unless resuming the same training configuration; save the resolved config."""
    old_path = rdir / "config.yaml"
    fresh = not cfg.resume
    if cfg.resume and old_path.is_file():
        old = yaml.safe_load(old_path.read_text()) or {}
        new = to_dict(cfg)
        changed = sorted(k for k in new if k not in RESUME_FREE_KEYS and old.get(k) != new[k])
        if changed:
            log.warning("%s: config changed (%s); not resuming, starting fresh", rdir,
                        ", ".join(changed))
            fresh = True
    if fresh:
        for d in rdir.glob("fold*"):
            shutil.rmtree(d, ignore_errors=True)
    save_config(cfg, old_path)


def run(cfg: ImageConfig, callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train every selected fold; write OOF, test predictions, metrics and the config."""
    t0 = time.perf_counter()
    if not timm.is_model(cfg.model_name):  # fail before any data is read
        raise ValueError(f"model_name {cfg.model_name!r} is not a timm model "
                         "(see timm.list_models())")
    if cfg.pretrained:
        find_pretrained(cfg.model_name, cfg.pretrained_path)
    rt = resolve_runtime(cfg)
    if rt["on_gpu"]:
        torch.set_float32_matmul_precision("high")
    else:
        torch.set_num_threads(rt["cpu_threads"])
    name = output_name(cfg)
    rdir = run_dir(cfg.artifacts, name)
    inputs, test, test_images = build_inputs(cfg)
    available = sorted(int(f) for f in inputs.table["fold"].unique())
    folds = list(cfg.folds) or available
    unknown = sorted(set(folds) - set(available))
    if unknown:
        raise ValueError(f"folds {unknown} do not exist; available: {available}")
    _prepare_run_dir(cfg, rdir)
    log.info("%s: %s %dpx, %d rows, folds %s, fusion=%s, precision=%s%s, resume=%s", name,
             cfg.model_name, cfg.image_size, inputs.table.height, folds, bool(inputs.tab_cols),
             rt["precision"], "" if rt["on_gpu"] else f", {rt['cpu_threads']} CPU thread(s)",
             cfg.resume)
    results = [train_fold(cfg, inputs, test, test_images, k, rdir, rt, callbacks) for k in folds]
    oof = pl.concat([r["oof"] for r in results])
    oof_file = write_parquet(oof, oof_path(cfg.artifacts, name))
    scored = oof.join(inputs.table.select("isic_id", "target"), on="isic_id", how="left",
                      maintain_order="left")
    y = scored["target"].to_numpy()
    metrics: dict[str, Any] = {
        "name": name, "model_name": cfg.model_name, "image_size": cfg.image_size,
        "fusion": bool(inputs.tab_cols), "precision": rt["precision"],
        "folds": {str(r["metrics"]["fold"]): r["metrics"] for r in results},
        "oof": {**scores(y, scored["pred"].to_numpy()), "n": oof.height, "n_pos": int(y.sum())},
        "seconds": round(time.perf_counter() - t0, 1),
        "oof_path": str(oof_file),
    }
    fold_pauc = [r["metrics"]["pauc"] for r in results if r["metrics"]["pauc"] is not None]
    metrics["mean_fold_pauc"] = float(np.mean(fold_pauc)) if fold_pauc else None
    tests = [r["test"] for r in results if r["test"] is not None]
    if tests:
        test_df = (pl.concat(tests).group_by("isic_id", maintain_order=True)
                   .agg(pl.col("pred").mean()))
        metrics["test_path"] = str(write_parquet(test_df, test_pred_path(cfg.artifacts, name)))
    write_json(metrics, rdir / "metrics.json")
    save_config(cfg, rdir / "config.yaml")
    log.info("%s: OOF pAUC %s AUC %s over %d rows (%.0fs)", name, fmt(metrics["oof"]["pauc"]),
             fmt(metrics["oof"]["auc"]), oof.height, metrics["seconds"])
    return metrics
