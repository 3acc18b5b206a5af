"""One fold of the image stage: fit for a budget of steps (resuming from ``last.ckpt``), then
score the whole held-out fold and the test rows once with the final weights.

A finished fold leaves ``fold.json`` + its prediction files, so a rerun of an interrupted
multi-fold run skips it; an unfinished one continues from its last saved step. Under DDP every
rank trains and predicts its share, the predictions are gathered onto every rank and global
rank 0 alone writes the fold's files (:mod:`isicstack.vision.distributed`).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytorch_lightning as lightning
import torch
from pytorch_lightning.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from isicstack.data.io import write_json, write_parquet
from isicstack.data.layout import run_dir
from isicstack.data.metric import fmt_score, fold_scores
from isicstack.vision.config import ImageConfig
from isicstack.vision.data import CropDataset, eval_transform
from isicstack.vision.datamodule import FoldDataModule, fold_seed
from isicstack.vision.distributed import barrier, gather_rows, global_rank
from isicstack.vision.fold_table import TrainInputs
from isicstack.vision.mlflow_log import fold_loggers
from isicstack.vision.model import ImageClassifier, build_model
from isicstack.vision.prepare import Sources

log = logging.getLogger(__name__)


class _FoldLog(Callback):
    """A log line per pass over the balanced subset, and the step a (resumed) fit started at."""

    def __init__(self, fold: int, steps: int) -> None:
        self.fold, self.steps, self.start_step, self._t = fold, steps, None, time.perf_counter()

    def on_train_start(self, trainer: lightning.Trainer, pl_module: Any) -> None:
        self.start_step = trainer.global_step

    def on_train_epoch_end(self, trainer: lightning.Trainer, pl_module: Any) -> None:
        if trainer.global_rank:
            return
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        log.info("fold %d step %d/%d: %s (%.1fs)", self.fold, trainer.global_step, self.steps,
                 ", ".join(f"{k}={v:.4f}" for k, v in sorted(m.items())),
                 time.perf_counter() - self._t)


def predict_rows(trainer: lightning.Trainer, model: ImageClassifier, loader: Any,
                 n: int) -> dict[str, np.ndarray]:
    """Every output of ``predict_step`` (``pred``, a fused model's ``image_part``) for rows
    0..n-1 of ``loader``'s dataset, in index order, every rank's share gathered."""
    return gather_rows(trainer.predict(model, dataloaders=loader), n)


def _finished_steps(last: Path) -> int | None:
    """The step count of a fold whose training ended (``last.ckpt`` holds the final weights
    only: no optimizer state), else None: a fold killed while scoring resumes by scoring."""
    ckpt = torch.load(last, map_location="cpu", weights_only=False, mmap=True)
    return None if ckpt.get("optimizer_states") else int(ckpt["global_step"])


def _model(cfg: ImageConfig, n_tab: int, rt: dict[str, Any], fold: int) -> ImageClassifier:
    model = build_model(cfg, n_tab, rt["channels_last"])
    if cfg.init_from:
        src = run_dir(cfg.artifacts, cfg.init_from) / f"fold{fold}" / "last.ckpt"
        model.init_from_image_only(torch.load(src, map_location="cpu",
                                              weights_only=True)["state_dict"])
    return model


def _reused(fdir: Path, fold: int) -> dict[str, Any] | None:
    """A finished fold's result read back from its files (None when it has not finished)."""
    done = fdir / "fold.json"
    if not done.is_file():
        return None
    log.info("fold %d: already finished in %s, reusing its predictions", fold, fdir)
    info = json.loads(done.read_text())
    return {"metrics": info, "oof": pl.read_parquet(fdir / "oof.parquet"),
            "test": pl.read_parquet(fdir / "test.parquet") if info["has_test"] else None}


def _trainer(cfg: ImageConfig, rt: dict[str, Any], rdir: Path, fold: int, rank: int,
             callbacks: list[Callback]) -> tuple[lightning.Trainer, _FoldLog]:
    """The fold's Trainer: a budget of steps, ``last.ckpt`` saved on the way (for resuming),
    optional EMA and subset validation, CSV (+ MLflow on rank 0) logs; and its log callback."""
    opt, rc, fdir = cfg.optim, cfg.runtime, rdir / f"fold{fold}"
    ckpt = ModelCheckpoint(dirpath=fdir, save_last=True, save_top_k=0,
                           every_n_train_steps=max(1, min(opt.steps // 4, 500)),
                           enable_version_counter=False)
    flog = _FoldLog(fold, opt.steps)
    averaging = [] if opt.ema_decay <= 0 else [EMAWeightAveraging(
        decay=opt.ema_decay, update_starting_at_step=int(opt.ema_start * opt.steps))]
    val = {"val_check_interval": opt.val_every, "check_val_every_n_epoch": None} \
        if opt.val_every > 0 else {"limit_val_batches": 0}
    trainer = lightning.Trainer(
        max_steps=opt.steps, max_epochs=-1, accelerator=rc.accelerator, devices=rc.devices,
        strategy=rc.strategy, precision=rt["precision"],
        callbacks=[ckpt, flog, *averaging, *callbacks],
        logger=[CSVLogger(fdir, name="logs"),
                *(fold_loggers(cfg.artifacts, rdir, fold) if rank == 0 else [])],
        default_root_dir=fdir, num_sanity_val_steps=0, enable_model_summary=False,
        log_every_n_steps=10, enable_progress_bar=False, benchmark=rt["on_gpu"],
        use_distributed_sampler=False, **val)  # the DataModule shares rows out itself
    return trainer, flog


@contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's warnings that say nothing about this setup (few workers, short epochs...)."""
    with warnings.catch_warnings():
        for msg in (".*does not have many workers.*", ".*smaller than the logging interval.*",
                    ".*exists and is not empty.*", ".*treespec.*", ".*fault-tolerant.*",
                    ".*resuming from a checkpoint that ended before the epoch ended.*"):
            warnings.filterwarnings("ignore", msg)
        yield


def _fit(trainer: lightning.Trainer, model: ImageClassifier, dm: FoldDataModule, fold: int,
         last: Path) -> int | None:
    """Fit (continuing from ``last`` when it exists) and save the final weights; or, when
    ``last`` holds a finished fit (killed while scoring), load its weights and return its
    step count, so the fold is only scored."""
    resumed = last.is_file()
    trained = _finished_steps(last) if resumed else None
    if trained is not None:
        log.info("fold %d: training finished at step %d; scoring only", fold, trained)
        model.load_state_dict(torch.load(last, map_location="cpu",
                                         weights_only=True)["state_dict"])
        dm.trainer = trainer  # the rank's share of the rows, as after a fit
        return trained
    trainer.fit(model, datamodule=dm, ckpt_path=str(last) if resumed else None)
    trainer.save_checkpoint(last, weights_only=True)  # the final weights, for inference
    return None


def _predict_test(trainer: lightning.Trainer, model: ImageClassifier, dm: FoldDataModule,
                  inputs: TrainInputs, sources: Sources) -> pl.DataFrame | None:
    """The fold model's scores of the test rows (None without test rows)."""
    if inputs.test is None or sources.test is None or not inputs.test.height:
        return None
    ds = CropDataset(sources.test, inputs.test["isic_id"].to_list(),
                     eval_transform(dm.cfg.model.image_size), tab=inputs.tab(inputs.test))
    return pl.DataFrame({"isic_id": ds.ids,
                         **predict_rows(trainer, model, dm.eval_loader(ds), len(ds))})


def _save(fdir: Path, rank: int, oof: pl.DataFrame, test_df: pl.DataFrame | None,
          metrics: dict[str, Any], callbacks: list[Callback]) -> None:
    """Rank 0 writes the fold's files (``fold.json`` last: it marks the fold finished); every
    rank waits for them, then tells the callbacks (e.g. tuning's pruning reporter)."""
    if rank == 0:
        write_parquet(oof, fdir / "oof.parquet")
        if test_df is not None:
            write_parquet(test_df, fdir / "test.parquet")
        write_json(metrics, fdir / "fold.json")
    barrier()  # rank 0's files are written before any rank goes on
    for cb in callbacks:
        if hasattr(cb, "on_fold_end"):
            cb.on_fold_end(metrics["fold"], metrics)
    if rank == 0:
        log.info("fold %d: OOF pAUC %s AUC %s (%d steps, %.0fs)", metrics["fold"],
                 fmt_score(metrics["pauc"]), fmt_score(metrics["auc"]), metrics["steps"],
                 metrics["seconds"])


def train_fold(cfg: ImageConfig, inputs: TrainInputs, sources: Sources, fold: int, rdir: Path,
               rt: dict[str, Any], callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train one fold (resuming from its ``last.ckpt``), predict its OOF rows and the test rows."""
    fdir, callbacks = rdir / f"fold{fold}", callbacks or []
    reused = _reused(fdir, fold) if cfg.resume else None
    if reused is not None:
        return reused
    t0 = time.perf_counter()
    lightning.seed_everything(fold_seed(cfg, fold), workers=True, verbose=False)
    dm = FoldDataModule(cfg, inputs, sources, fold)
    model = _model(cfg, len(inputs.tab_cols), rt, fold)
    rank = global_rank()
    if rank:  # other augmentation draws than rank 0's (loader workers are seeded by rank)
        torch.manual_seed(fold_seed(cfg, fold) + 7919 * rank)
    trainer, flog = _trainer(cfg, rt, rdir, fold, rank, callbacks)
    last = fdir / "last.ckpt"
    resumed = last.is_file()
    with _quiet():
        trained = _fit(trainer, model, dm, fold, last)
        t_score = time.perf_counter()
        oof_out = predict_rows(trainer, model, dm.predict_dataloader(), dm.valid_rows.size)
        test_df = _predict_test(trainer, model, dm, inputs, sources)
    t_end = time.perf_counter()
    valid = inputs.table[dm.valid_rows]
    oof = pl.DataFrame({"isic_id": valid["isic_id"], "fold": valid["fold"], **oof_out})
    y = valid["target"].to_numpy()
    metrics = {
        "fold": fold, **fold_scores(y, oof_out["pred"]), "n_valid": int(dm.valid_rows.size),
        "n_pos": int(y.sum()),
        "resumed_from_step": (flog.start_step if flog.start_step is not None
                              else cfg.optim.steps) if resumed else None,
        "steps": int(trainer.global_step if trained is None else trained),
        "seconds": round(time.perf_counter() - t0, 1),
        "train_seconds": round(t_score - t0, 1), "score_seconds": round(t_end - t_score, 1),
        "world_size": int(trainer.world_size),
        "has_test": test_df is not None,
    }
    _save(fdir, rank, oof, test_df, metrics, callbacks)
    return {"metrics": metrics, "oof": oof, "test": test_df}
