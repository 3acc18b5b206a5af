"""Crops as normalised tensors: image sources, torchvision v2 transforms, dataset, DataModule.

A *source* maps an ``isic_id`` to a decoded RGB crop: the Kaggle HDF5 (opened lazily, once per
process, so it pickles into DataLoader workers without a handle), a folder of JPEGs, or a
decode-once cache (:mod:`isicstack.vision.cache`) of crops already resized to the model's input
size. Transforms are ``torchvision.transforms.v2`` pipelines on uint8 CHW tensors. The resize is
the last geometric step (a top team lost ~0.006 LB resizing first): flips commute with it, and
the ``strong`` recipe's random resized crop *is* the resize; colour jitter runs after it because
it is per-pixel and cheaper on the small image (on the float crop, the cheap way:
:mod:`isicstack.vision.augment`). Under DDP the DataModule shares rows out itself
(:mod:`isicstack.vision.distributed`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pytorch_lightning as lightning
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from isicstack.data.crops import BadImageError, CropStore, decode_named
from isicstack.vision.augment import ColourJitter
from isicstack.vision.batch_augment import BatchAugment, collate_padded
from isicstack.vision.distributed import eval_sampler, world_of
from isicstack.vision.sampler import BalancedEpochSampler

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")
Augment = Literal["none", "flips", "strong"]
NO_TAB = np.zeros(0, np.float32)  # the tab row of a model without tabular inputs


def shades_of_gray(image: np.ndarray, power: int = 6) -> np.ndarray:
    """Shades-of-Gray colour constancy (Finlayson 2004): equalise the Minkowski-p channel norms.

    Removes the illuminant / camera colour cast that differs between hospitals.
    """
    img = image.astype(np.float32)
    norm = np.power(np.mean(np.power(img, power), axis=(0, 1)), 1.0 / power)
    norm = norm / max(float(np.sqrt(np.sum(norm**2))), 1e-6)
    scale = 1.0 / np.maximum(norm * np.sqrt(3.0), 1e-6)
    return np.clip(img * scale, 0, 255).astype(np.uint8)


class ImageSource(Protocol):
    """``isic_id`` -> decoded RGB uint8 (H, W, 3); errors name the id and the file."""

    def keys(self) -> list[str]: ...

    def image(self, isic_id: str) -> np.ndarray: ...


class HDF5Source:
    """Crops of a Kaggle-layout HDF5 (key = isic_id, value = JPEG bytes)."""

    def __init__(self, path: str | os.PathLike[str], color_constancy: bool = False,
                 fast: bool = True) -> None:
        self.store = CropStore(path)
        self.path, self.color_constancy, self.fast = self.store.path, color_constancy, fast

    def keys(self) -> list[str]:
        return CropStore.ids(self.path)

    def image(self, isic_id: str) -> np.ndarray:
        img = self.store.read(isic_id, fast=self.fast)
        return shades_of_gray(img) if self.color_constancy else img


class FolderSource:
    """A folder of JPEG crops; the file stem is the ``isic_id``."""

    def __init__(self, folder: str | os.PathLike[str], color_constancy: bool = False,
                 fast: bool = True) -> None:
        self.path = Path(folder)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: image folder not found")
        self.files = {p.stem: p for p in sorted(self.path.iterdir())
                      if p.suffix in JPEG_SUFFIXES and p.is_file()}
        if not self.files:
            raise FileNotFoundError(f"{self.path}: no .jpg/.jpeg files")
        self.color_constancy, self.fast = color_constancy, fast

    def keys(self) -> list[str]:
        return list(self.files)

    def image(self, isic_id: str) -> np.ndarray:
        path = self.files.get(isic_id)
        if path is None:
            raise BadImageError(f"{self.path}: no image for isic_id {isic_id!r}", isic_id,
                                self.path)
        img = decode_named(path.read_bytes(), isic_id, path, self.fast)
        return shades_of_gray(img) if self.color_constancy else img


class BlankForBad:
    """``source`` with its known-bad crops read as blank (black) ``size`` px crops: streamed
    ``data.on_bad_image: skip`` scores them as the memory cache does its zeroed rows."""

    def __init__(self, source: ImageSource, bad_ids: Sequence[str], size: int) -> None:
        self.source, self.bad, self.size = source, frozenset(bad_ids), size

    def keys(self) -> list[str]:
        return self.source.keys()

    def image(self, isic_id: str) -> np.ndarray:
        if isic_id in self.bad:
            return np.zeros((self.size, self.size, 3), np.uint8)
        return self.source.image(isic_id)


def open_source(path: str | os.PathLike[str], color_constancy: bool = False,
                fast: bool = True) -> HDF5Source | FolderSource:
    """An HDF5 crop file or a folder of JPEGs, by what ``path`` is."""
    p = Path(path)
    if p.is_dir():
        return FolderSource(p, color_constancy, fast)
    return HDF5Source(p, color_constancy, fast)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 numpy (possibly a read-only or strided view) -> contiguous CHW uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def _finish() -> list[Any]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


def eval_transform(size: int) -> v2.Compose:
    """Resize to ``size`` x ``size`` (a no-op on cached crops), scale, normalise."""
    return v2.Compose([v2.Resize((size, size), antialias=True), *_finish()])


def train_transform(size: int, augment: Augment = "flips") -> v2.Compose:
    """``flips``: resize + random h/v flips (random init at small size: what learns fastest).
    ``strong``: random resized crop (the resize) + flips + colour jitter (pretrained, large);
    geometry on the uint8 crop, the jitter (torchvision's ColorJitter(0.2, 0.2, 0.2, 0.02) with
    p=0.8, computed more cheaply: loader.json's ``strong_transform``) on the float one.
    """
    if augment == "strong":
        return v2.Compose([
            v2.RandomResizedCrop((size, size), scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
            v2.ToDtype(torch.float32, scale=True), ColourJitter(0.2, 0.2, 0.2, 0.02, p=0.8),
            v2.Normalize(MEAN, STD)])
    if augment == "flips":
        ops: list[Any] = [v2.Resize((size, size), antialias=True), v2.RandomHorizontalFlip(),
                          v2.RandomVerticalFlip()]
    elif augment == "none":
        ops = [v2.Resize((size, size), antialias=True)]
    else:
        raise ValueError(f"augment must be none, flips or strong, got {augment!r}")
    return v2.Compose([*ops, *_finish()])


class CropDataset(Dataset):
    """``isic_id``s of one source -> dict(image, target, tab, index).

    ``index`` is the row position in ``ids``, so predictions gathered from shuffled or
    distributed loaders map back to their ``isic_id``.
    """

    def __init__(self, source: ImageSource | str | os.PathLike[str], ids: Sequence[str],
                 transform: Any, targets: Sequence[float] | np.ndarray | None = None,
                 tab: np.ndarray | None = None) -> None:
        self.source = source if hasattr(source, "image") else open_source(source)
        self.ids = list(ids)
        self.transform = transform
        n = len(self.ids)
        self.targets = (np.zeros(n, np.float32) if targets is None
                        else np.asarray(targets, dtype=np.float32).ravel())
        if self.targets.shape[0] != n:
            raise ValueError(f"CropDataset: {n} ids but {self.targets.shape[0]} targets")
        self.tab = None if tab is None or tab.size == 0 else np.asarray(tab, dtype=np.float32)
        if self.tab is not None and self.tab.shape[0] != n:
            raise ValueError(f"CropDataset: {n} ids but {self.tab.shape[0]} rows of tab features")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.source.image(self.ids[i])  # transform None: the decoded HWC crop as is,
        # numpy target and tab rows: the collate makes one tensor of each per batch (a tensor
        # per sample cost a third of a decode, in every loader worker)
        tab = self.tab[i] if self.tab is not None else NO_TAB
        return {"image": image if self.transform is None  # for batch_augment.collate_padded
                else self.transform(_to_tensor(image)),
                "target": self.targets[i], "tab": tab, "index": i}


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, sampler: Any = None,
                drop_last: bool = False, pin_memory: bool | None = None,
                multiprocessing_context: str | None = None,
                collate_fn: Any = None) -> DataLoader:
    """DataLoader with pinned memory (on CUDA) and persistent workers whenever workers are used."""
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last, pin_memory=pin_memory, persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None)


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
        tf = (None if train and self.augmenter else train_transform(self.image_size, self.augment)
              if train else eval_transform(self.image_size))
        return CropDataset(self.source, self.ids[rows].tolist(), tf, self.targets[rows],
                           None if self.tab is None else self.tab[rows])

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset(self.train_rows, train=True)
        world, rank = world_of(self.trainer)
        sampler = BalancedEpochSampler(ds.targets, self.neg_ratio, self.seed, world, rank,
                                       self.batch_size)
        # BatchNorm fails on a last batch of one; drop the ragged tail when there is a full batch
        return make_loader(ds, self.batch_size, self.num_workers, sampler,
                           drop_last=len(sampler) > self.batch_size,
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
