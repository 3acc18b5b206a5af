"""Crops from the HDF5 store as normalised tensors: dataset, transforms and a per-fold DataModule.

The dataset keeps only a :class:`CropStore` (which opens its HDF5 file lazily, once per
process), ids and labels, so it pickles into forked or spawned DataLoader workers without an
open h5py handle. Every geometric augmentation runs at the crop's native resolution and the
resize comes last before normalisation (a top team lost ~0.006 LB resizing first); colour
jitter runs after the resize because it is per-pixel and cheaper on the small image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl_
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as tvf

from isicstack.data.crops import CropStore, decode_jpeg
from isicstack.vision.sampler import BalancedEpochSampler

try:
    import simplejpeg
except ImportError:  # pragma: no cover - declared dependency; decode_jpeg falls back to PIL
    simplejpeg = None

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def decode(data: bytes) -> np.ndarray:
    """JPEG bytes -> RGB uint8 (H, W, 3); simplejpeg with its fast DCT when available."""
    if simplejpeg is not None:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=True)
    return decode_jpeg(data)


def shades_of_gray(image: np.ndarray, power: int = 6) -> np.ndarray:
    """Shades-of-Gray colour constancy (Finlayson 2004): equalise the Minkowski-p channel norms.

    Removes the illuminant / camera colour cast that differs between hospitals.
    """
    img = image.astype(np.float32)
    norm = np.power(np.mean(np.power(img, power), axis=(0, 1)), 1.0 / power)
    norm = norm / max(float(np.sqrt(np.sum(norm**2))), 1e-6)
    scale = 1.0 / np.maximum(norm * np.sqrt(3.0), 1e-6)
    return np.clip(img * scale, 0, 255).astype(np.uint8)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 numpy (possibly a strided view) -> contiguous CHW uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def _normalise(image: torch.Tensor) -> torch.Tensor:
    """uint8 or [0,1] float CHW -> ImageNet-normalised float32."""
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image
    mean = torch.tensor(MEAN, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype).view(3, 1, 1)
    return (x - mean) / std


class EvalTransform:
    """Deterministic: optional colour constancy, resize to ``size`` x ``size``, normalise."""

    def __init__(self, size: int, color_constancy: bool = False) -> None:
        self.size = int(size)
        self.color_constancy = color_constancy

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if self.color_constancy:
            image = shades_of_gray(image)
        x = _to_tensor(image)
        if tuple(x.shape[1:]) != (self.size, self.size):
            x = tvf.resize(x, [self.size, self.size], antialias=True)
        return _normalise(x)


class TrainTransform:
    """Random dihedral (flips, transpose, rot90) -> random resized crop -> colour jitter.

    Randomness comes from torch's generator, which DataLoader seeds per worker (and
    ``seed_everything(workers=True)`` makes reproducible).
    """

    def __init__(
        self,
        size: int,
        color_constancy: bool = False,
        scale: tuple[float, float] = (0.7, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.02,
    ) -> None:
        self.size = int(size)
        self.color_constancy = color_constancy
        self.scale, self.ratio = scale, ratio
        self.brightness, self.contrast, self.saturation, self.hue = (
            brightness, contrast, saturation, hue)

    def _crop_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        area = h * w
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * float(torch.empty(1).uniform_(*self.scale))
            aspect = math.exp(float(torch.empty(1).uniform_(*log_r)))
            cw = round(math.sqrt(target * aspect))
            ch = round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,)))
                left = int(torch.randint(0, w - cw + 1, (1,)))
                return top, left, ch, cw
        return 0, 0, h, w

    def _uniform(self, amount: float) -> float:
        return float(torch.empty(1).uniform_(1 - amount, 1 + amount))

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if self.color_constancy:
            image = shades_of_gray(image)
        # dihedral group: rot90 x {identity, transpose} covers all 8 flips/rotations
        k = int(torch.randint(0, 4, (1,)))
        if k:
            image = np.rot90(image, k, axes=(0, 1))
        if bool(torch.randint(0, 2, (1,))):
            image = image.transpose(1, 0, 2)
        x = _to_tensor(image)
        top, left, ch, cw = self._crop_box(x.shape[1], x.shape[2])
        # crop + resize in one call: the resize is the last geometric step
        x = tvf.resized_crop(x, top, left, ch, cw, [self.size, self.size], antialias=True)
        x = x.float() / 255.0
        if self.brightness:
            x = x * self._uniform(self.brightness)
        if self.contrast:
            mean = tvf.rgb_to_grayscale(x).mean()
            x = (x - mean) * self._uniform(self.contrast) + mean
        if self.saturation:
            gray = tvf.rgb_to_grayscale(x)
            x = (x - gray) * self._uniform(self.saturation) + gray
        x = x.clamp_(0.0, 1.0)
        if self.hue:
            x = tvf.adjust_hue(x, float(torch.empty(1).uniform_(-self.hue, self.hue)))
        return _normalise(x)


class CropDataset(Dataset):
    """``isic_id``s of one HDF5 file -> dict(image, target, tab, index).

    ``index`` is the row position in ``ids``, so predictions gathered from shuffled or
    distributed loaders map back to their ``isic_id``.
    """

    def __init__(
        self,
        store: CropStore | str | os.PathLike[str],
        ids: Sequence[str],
        transform: EvalTransform | TrainTransform,
        targets: Sequence[float] | np.ndarray | None = None,
        tab: np.ndarray | None = None,
    ) -> None:
        self.store = store if isinstance(store, CropStore) else CropStore(store)
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
        image = decode(self.store.read_bytes(self.ids[i]))
        tab = torch.from_numpy(self.tab[i]) if self.tab is not None else torch.zeros(0)
        return {
            "image": self.transform(image),
            "target": torch.tensor(self.targets[i], dtype=torch.float32),
            "tab": tab,
            "index": i,
        }


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    sampler: Any = None,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    multiprocessing_context: str | None = None,
) -> DataLoader:
    """DataLoader with pinned memory (on CUDA) and persistent workers whenever workers are used."""
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
    )


class FoldDataModule(pl_.LightningDataModule):
    """Train on every fold except ``fold``, validate on ``fold``, from one fold table.

    ``ids``/``targets``/``folds`` (and optional ``tab`` rows) describe the whole training set;
    the HDF5 store is shared by both splits and opened only inside the processes that read it.
    """

    def __init__(
        self,
        images_path: str | os.PathLike[str],
        ids: Sequence[str],
        targets: np.ndarray,
        folds: np.ndarray,
        fold: int,
        image_size: int,
        batch_size: int,
        num_workers: int = 0,
        neg_ratio: float = 5.0,
        seed: int = 0,
        color_constancy: bool = False,
        tab: np.ndarray | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.images_path = images_path
        self.ids = np.asarray(ids, dtype=object)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.folds = np.asarray(folds)
        self.fold = int(fold)
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = num_workers
        self.neg_ratio = neg_ratio
        self.seed = seed
        self.color_constancy = color_constancy
        self.tab = tab
        self.train_rows = np.flatnonzero(self.folds != self.fold)
        self.valid_rows = np.flatnonzero(self.folds == self.fold)
        if not self.valid_rows.size:
            raise ValueError(f"fold {fold}: no validation rows")

    def _dataset(self, rows: np.ndarray, train: bool) -> CropDataset:
        tf = (TrainTransform(self.image_size, self.color_constancy) if train
              else EvalTransform(self.image_size, self.color_constancy))
        return CropDataset(self.images_path, self.ids[rows].tolist(), tf,
                           self.targets[rows], None if self.tab is None else self.tab[rows])

    def valid_ids(self) -> list[str]:
        """``isic_id`` of each validation row, in ``index`` order."""
        return self.ids[self.valid_rows].tolist()

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset(self.train_rows, train=True)
        sampler = BalancedEpochSampler(ds.targets, self.neg_ratio, self.seed)
        # BatchNorm fails on a last batch of one; drop the ragged tail when there is a full batch
        return make_loader(ds, self.batch_size, self.num_workers, sampler,
                           drop_last=len(sampler) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return make_loader(self._dataset(self.valid_rows, train=False), self.eval_batch_size,
                           self.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()
