"""One fold of the image stage: fit (resuming from ``last.ckpt``), then OOF and test predictions.

A finished fold leaves ``fold.json`` + its prediction files, so a rerun of an interrupted
multi-fold run skips it; an unfinished one continues from its last completed epoch.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pytorch_lightning as pl_
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from isicstack.data.io import write_json, write_parquet
from isicstack.data.metric import pauc, roc_auc
from isicstack.vision.data import CropDataset, EvalTransform, FoldDataModule, make_loader
from isicstack.vision.inputs import TrainInputs
from isicstack.vision.model import ImageClassifier

if TYPE_CHECKING:
    from isicstack.vision.train import ImageConfig

log = logging.getLogger(__name__)


class _FoldLog(Callback):
    """One log line per epoch, and the epoch a (resumed) fit started from."""

    def __init__(self, fold: int) -> None:
        self.fold, self.start_epoch, self._t = fold, None, 0.0

    def on_train_start(self, trainer: pl_.Trainer, pl_module: pl_.LightningModule) -> None:
        self.start_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: pl_.Trainer, pl_module: pl_.LightningModule) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl_.Trainer, pl_module: pl_.LightningModule) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        log.info("fold %d epoch %d/%d: %s (%.1fs)", self.fold, trainer.current_epoch + 1,
                 trainer.max_epochs, ", ".join(f"{k}={v:.4f}" for k, v in sorted(m.items())),
                 time.perf_counter() - self._t)


def _predict(trainer: pl_.Trainer, model: ImageClassifier, loader: Any, n: int) -> np.ndarray:
    """Probabilities for rows 0..n-1 of ``loader``'s dataset, in index order."""
    out = trainer.predict(model, dataloaders=loader)
    idx = torch.cat([o["index"] for o in out]).numpy()
    pred = torch.cat([o["pred"] for o in out]).numpy().astype(np.float64)
    res = np.full(n, np.nan)
    res[idx] = pred
    if np.isnan(res).any():
        raise RuntimeError(f"prediction covered {len(np.unique(idx))} of {n} rows")
    return res


def fmt(x: float | None) -> str:
    """A score for the log; folds without both classes have none."""
    return "n/a" if x is None else f"{x:.4f}"


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    """pAUC and AUC, or None where ``y`` lacks a class (they are undefined there)."""
    if 0 < y.sum() < y.size:
        return {"pauc": pauc(y, p), "auc": roc_auc(y, p)}
    return {"pauc": None, "auc": None}


def train_fold(cfg: ImageConfig, inputs: TrainInputs, test: pl.DataFrame | None,
               test_images: Path | None, fold: int, rdir: Path, rt: dict[str, Any],
               callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train one fold (resuming from its ``last.ckpt``), predict its OOF rows and the test rows."""
    fdir = rdir / f"fold{fold}"
    done = fdir / "fold.json"
    if cfg.resume and done.is_file():
        log.info("fold %d: already finished in %s, reusing its predictions", fold, fdir)
        info = json.loads(done.read_text())
        return {"metrics": info, "oof": pl.read_parquet(fdir / "oof.parquet"),
                "test": pl.read_parquet(fdir / "test.parquet") if info["has_test"] else None}
    t0 = time.perf_counter()
    pl_.seed_everything(cfg.seed + fold, workers=True)
    table = inputs.table
    dm = FoldDataModule(inputs.images_path, table["isic_id"].to_list(),
                        table["target"].to_numpy(), table["fold"].to_numpy(), fold,
                        cfg.image_size, cfg.batch_size, cfg.num_workers, cfg.neg_ratio,
                        cfg.seed + fold, cfg.color_constancy, inputs.tab())
    model = ImageClassifier(
        cfg.model_name, n_tab=len(inputs.tab_cols), lr=cfg.lr, weight_decay=cfg.weight_decay,
        backbone_lr_mult=cfg.backbone_lr_mult, pos_weight=cfg.pos_weight,
        warmup_frac=cfg.warmup_frac, pretrained=cfg.pretrained,
        pretrained_path=cfg.pretrained_path, channels_last=rt["channels_last"],
        tta_flip=cfg.tta_flip)
    ckpt = ModelCheckpoint(dirpath=fdir, filename="best", monitor="val/pauc", mode="max",
                           save_top_k=1, save_last=True, auto_insert_metric_name=False,
                           enable_version_counter=False)
    flog = _FoldLog(fold)
    trainer = pl_.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices,
        strategy=cfg.strategy, precision=rt["precision"],
        callbacks=[ckpt, flog, *(callbacks or [])],
        logger=CSVLogger(fdir, name="logs"), default_root_dir=fdir,
        limit_train_batches=cfg.max_train_batches or 1.0,
        limit_val_batches=cfg.max_val_batches or 1.0,
        num_sanity_val_steps=0, enable_model_summary=False, log_every_n_steps=10,
        enable_progress_bar=False, benchmark=rt["on_gpu"])
    last = fdir / "last.ckpt"
    resumed = last.is_file()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        warnings.filterwarnings("ignore", ".*treespec.*")
        trainer.fit(model, datamodule=dm, ckpt_path=str(last) if resumed else None)
        n_valid = dm.valid_rows.size
        lv = model.last_val
        reuse = (cfg.use_checkpoint == "last" and not cfg.tta_flip and not cfg.max_val_batches
                 and lv is not None and lv["epoch"] == cfg.epochs - 1
                 and len(lv["index"]) == n_valid)
        if reuse:  # the final validation pass already scored every row with these weights
            oof_pred = np.empty(n_valid)
            oof_pred[lv["index"]] = lv["pred"]
        else:
            best = ckpt.best_model_path
            path = best if cfg.use_checkpoint == "best" and best else str(last)
            state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
            model.load_state_dict(state)
            oof_pred = _predict(trainer, model, dm.predict_dataloader(), n_valid)
        test_df = None
        if test is not None and test_images is not None and test.height:
            ds = CropDataset(test_images, test["isic_id"].to_list(),
                             EvalTransform(cfg.image_size, cfg.color_constancy),
                             tab=inputs.tab(test) if inputs.tab_cols else None)
            loader = make_loader(ds, 2 * cfg.batch_size, cfg.num_workers)
            test_df = pl.DataFrame({"isic_id": ds.ids,
                                    "pred": _predict(trainer, model, loader, len(ds))})
    valid = table[dm.valid_rows]
    oof = pl.DataFrame({"isic_id": valid["isic_id"], "fold": valid["fold"], "pred": oof_pred})
    y = valid["target"].to_numpy()
    best_score = ckpt.best_model_score
    metrics = {
        "fold": fold, **scores(y, oof_pred), "n_valid": int(n_valid), "n_pos": int(y.sum()),
        "best_val_pauc": None if best_score is None else float(best_score),
        "resumed_from_epoch": (cfg.epochs if flog.start_epoch is None else flog.start_epoch)
        if resumed else None,
        "epochs": cfg.epochs, "seconds": round(time.perf_counter() - t0, 1),
        "has_test": test_df is not None,
    }
    write_parquet(oof, fdir / "oof.parquet")
    if test_df is not None:
        write_parquet(test_df, fdir / "test.parquet")
    write_json(metrics, done)
    log.info("fold %d: OOF pAUC %s AUC %s (%.0fs)", fold, fmt(metrics["pauc"]),
             fmt(metrics["auc"]), metrics["seconds"])
    return {"metrics": metrics, "oof": oof, "test": test_df}
