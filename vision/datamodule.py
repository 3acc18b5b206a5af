"""The image stage's Lightning DataModule: which rows of a fold train and score, and how each
training batch is made (the balanced sampler, the augmentation in the loader or, with
``augment_on: device``, decoded crops from threads and the augmentation on the device).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as lightning
from torch.utils.data import DataLoader, Dataset

from isicstack.vision.batch_augment import BatchAugment, collate_padded
from isicstack.vision.data import (
    MEAN,
    STD,
    Augment,
    CropDataset,
    ImageSource,
    eval_transform,
    make_loader,
    train_transform,
)
from isicstack.vision.distributed import eval_sampler, world_of
from isicstack.vision.sampler import BalancedEpochSampler


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

    def __init__(self, source: ImageSource, ids: Sequence[str], targets: np.ndarray,
                 folds: np.ndarray, fold: int, image_size: int, batch_size: int,
                 num_workers: int = 0, neg_ratio: float = 10.0, seed: int = 0,
                 augment: Augment = "flips", tab: np.ndarray | None = None,
                 val_neg_ratio: float = 10.0, trainable: np.ndarray | None = None,
                 augment_on: str = "loader") -> None:
        super().__init__()
        self.source = source
        self.ids = np.asarray(ids, dtype=object)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.folds = np.asarray(folds)
        self.fold, self.image_size, self.batch_size = int(fold), image_size, batch_size
        self.num_workers, self.neg_ratio, self.seed = num_workers, neg_ratio, seed
        self.augment, self.tab, self.val_neg_ratio = augment, tab, val_neg_ratio
        # device: training crops leave the loader decoded and are augmented once on the device
        self.augmenter = (BatchAugment(image_size, augment, MEAN, STD) if augment_on == "device"
                          else None)
        ok = np.ones(len(self.folds), bool) if trainable is None else np.asarray(trainable, bool)
        self.train_rows = np.flatnonzero((self.folds != self.fold) & ok)
        self.valid_rows = np.flatnonzero(self.folds == self.fold)
        if not self.valid_rows.size:
            raise ValueError(f"fold {fold}: no validation rows")

    def _dataset(self, rows: np.ndarray, train: bool) -> CropDataset:
        device = train and self.augmenter is not None  # decoded by threads, augmented later
        tf = (None if device else train_transform(self.image_size, self.augment)
              if train else eval_transform(self.image_size))
        return CropDataset(self.source, self.ids[rows].tolist(), tf, self.targets[rows],
                           None if self.tab is None else self.tab[rows],
                           threads=self.num_workers if device else 0)

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset(self.train_rows, train=True)
        world, rank = world_of(self.trainer)
        sampler = BalancedEpochSampler(ds.targets, self.neg_ratio, self.seed, world, rank,
                                       self.batch_size)
        # BatchNorm fails on a last batch of one; drop the ragged tail when there is a full batch
        # augment_on device: num_workers decode threads in this process, no worker processes
        return make_loader(ds, self.batch_size, 0 if self.augmenter else self.num_workers,
                           sampler, drop_last=len(sampler) > self.batch_size,
                           collate_fn=collate_padded if self.augmenter else None)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A training batch the loader left decoded (``hw``: ``collate_padded``) is augmented
        here, on the device it was moved to, one draw per crop (``augment_on: device``)."""
        if self.augmenter is not None and isinstance(batch, dict) and "hw" in batch:
            image = batch["image"]
            batch = {**batch, "image": self.augmenter.to(image.device)(image, batch["hw"])}
        return batch

    def val_dataloader(self) -> DataLoader:
        sub = stratified_subset(self.targets[self.valid_rows], self.val_neg_ratio, self.seed)
        return self.eval_loader(self._dataset(self.valid_rows[sub], train=False))

    def predict_dataloader(self) -> DataLoader:
        return self.eval_loader(self._dataset(self.valid_rows, train=False))

    def eval_loader(self, ds: Dataset) -> DataLoader:
        """``ds`` in order (this rank's padded share under DDP), at twice the batch size."""
        return make_loader(ds, 2 * self.batch_size, self.num_workers,
                           eval_sampler(ds, self.trainer))
