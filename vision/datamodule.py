"""The image stage's Lightning DataModule: which rows of a fold train and score, and how each
training batch is made (the balanced sampler, the augmentation in the loader or, with
``augment_on: device``, decoded crops from threads and the augmentation on the device).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as lightning
from torch.utils.data import DataLoader, Dataset

from isicstack.vision.batch_augment import BatchAugment, collate_padded
from isicstack.vision.config import ImageConfig
from isicstack.vision.data import (
    MEAN,
    STD,
    CropDataset,
    eval_transform,
    make_loader,
    train_transform,
)
from isicstack.vision.distributed import eval_sampler, world_of
from isicstack.vision.fold_table import TrainInputs
from isicstack.vision.prepare import Sources
from isicstack.vision.sampler import BalancedEpochSampler


def fold_seed(cfg: ImageConfig, fold: int) -> int:
    """The seed of a fold's initial weights and of its sampling: folds draw differently, and a
    fold draws the same when it alone is rerun."""
    return cfg.seed + fold


def stratified_subset(y: np.ndarray, neg_ratio: float, seed: int) -> np.ndarray:
    """Every positive plus ``neg_ratio`` negatives per positive (fixed draw), sorted."""
    pos, neg = np.flatnonzero(y > 0.5), np.flatnonzero(y <= 0.5)
    n_neg = min(neg.size, int(round(neg_ratio * max(pos.size, 1))))
    keep = np.random.default_rng(seed).choice(neg, size=n_neg, replace=False)
    return np.sort(np.concatenate([pos, keep]))


class FoldDataModule(lightning.LightningDataModule):
    """Train on every fold except ``fold``; validate on a cheap stratified subset of ``fold``.

    The whole held-out fold is scored once, after training (``predict_dataloader``): pAUC
    needs every row's rank, and scoring a 4,000-row fold every epoch cost more than training.
    Under DDP (the attached Trainer's world size > 1) each rank gets its share of every loader.
    """

    def __init__(self, cfg: ImageConfig, inputs: TrainInputs, sources: Sources,
                 fold: int) -> None:
        """Rows of ``inputs.table`` (isic_id, target, fold); crops from ``sources.train``, those
        in ``sources.bad_ids`` left out of training (still scored); batches as ``cfg.data``
        says, drawn with the fold's seed."""
        super().__init__()
        table, self.cfg = inputs.table, cfg
        self.source, self.tab, self.seed = sources.train, inputs.tab(), fold_seed(cfg, fold)
        self.ids = np.asarray(table["isic_id"].to_list(), dtype=object)
        self.targets = np.asarray(table["target"].to_numpy(), dtype=np.float32)
        folds = np.asarray(table["fold"].to_numpy())
        # device: training crops leave the loader decoded and are augmented once on the device
        self.augmenter = (BatchAugment(cfg.model.image_size, cfg.data.augment, MEAN, STD)
                          if cfg.data.augment_on == "device" else None)
        trainable = ~table["isic_id"].is_in(sources.bad_ids).to_numpy()
        self.train_rows = np.flatnonzero((folds != fold) & trainable)
        self.valid_rows = np.flatnonzero(folds == fold)
        if not self.valid_rows.size:
            raise ValueError(f"fold {fold}: no validation rows")

    def _dataset(self, rows: np.ndarray, train: bool) -> CropDataset:
        device = train and self.augmenter is not None  # decoded by threads, augmented later
        size = self.cfg.model.image_size
        tf = (None if device else train_transform(size, self.cfg.data.augment)
              if train else eval_transform(size))
        return CropDataset(self.source, self.ids[rows].tolist(), tf, self.targets[rows],
                           None if self.tab is None else self.tab[rows],
                           threads=self.cfg.data.num_workers if device else 0)

    def train_dataloader(self) -> DataLoader:
        ds, dc = self._dataset(self.train_rows, train=True), self.cfg.data
        world, rank = world_of(self.trainer)
        sampler = BalancedEpochSampler(ds.targets, dc.neg_ratio, self.seed, world, rank,
                                       dc.batch_size)
        # BatchNorm fails on a last batch of one; drop the ragged tail when there is a full batch
        # augment_on device: num_workers decode threads in this process, no worker processes
        return make_loader(ds, dc.batch_size, 0 if self.augmenter else dc.num_workers,
                           sampler, drop_last=len(sampler) > dc.batch_size,
                           collate_fn=collate_padded if self.augmenter else None)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A training batch the loader left decoded (``hw``: ``collate_padded``) is augmented
        here, on the device it was moved to, one draw per crop (``augment_on: device``)."""
        if self.augmenter is not None and isinstance(batch, dict) and "hw" in batch:
            image = batch["image"]
            batch = {**batch, "image": self.augmenter.to(image.device)(image, batch["hw"])}
        return batch

    def val_dataloader(self) -> DataLoader:
        sub = stratified_subset(self.targets[self.valid_rows], self.cfg.data.val_neg_ratio,
                                self.seed)
        return self.eval_loader(self._dataset(self.valid_rows[sub], train=False))

    def predict_dataloader(self) -> DataLoader:
        return self.eval_loader(self._dataset(self.valid_rows, train=False))

    def eval_loader(self, ds: Dataset) -> DataLoader:
        """``ds`` in order (this rank's padded share under DDP), at twice the batch size."""
        return make_loader(ds, 2 * self.cfg.data.batch_size, self.cfg.data.num_workers,
                           eval_sampler(ds, self.trainer))
