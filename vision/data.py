"""Crops as normalised tensors: image sources, torchvision v2 transforms, the dataset.

A *source* maps an ``isic_id`` to a decoded RGB crop: the Kaggle HDF5 (opened lazily, once per
process, so it pickles into DataLoader workers without a handle), a folder of JPEGs, or a
decode-once cache (:mod:`isicstack.vision.cache`) of crops already resized to the model's input
size. Transforms are ``torchvision.transforms.v2`` pipelines on uint8 CHW tensors. The resize is
the last geometric step (a top team lost ~0.006 LB resizing first): flips commute with it, and
the ``strong`` recipe's random resized crop *is* the resize; colour jitter runs after it because
it is per-pixel and cheaper on the small image (on the float crop, the cheap way:
:mod:`isicstack.vision.augment`). The DataModule: :mod:`isicstack.vision.datamodule`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from isicstack.data.colour import shades_of_gray
from isicstack.data.crops import BadImageError, CropStore, decode_named, jpeg_size
from isicstack.vision.augment import ColourJitter
from isicstack.vision.batch_augment import packed_canvas, padded_batch, slices

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")
Augment = Literal["none", "flips", "strong"]
NO_TAB = np.zeros(0, np.float32)  # the tab row of a model without tabular inputs
RING = 4  # batch buffers a threaded CropDataset reuses in turn
FAST_DECODE = True  # libjpeg-turbo fast DCT + upsampling: training and prediction decode alike


class ImageSource(Protocol):
    """``isic_id`` -> decoded RGB uint8 (H, W, 3); errors name the id and the file."""

    def keys(self) -> list[str]: ...

    def image(self, isic_id: str) -> np.ndarray: ...


class HDF5Source:
    """Crops of a Kaggle-layout HDF5 (key = isic_id, value = JPEG bytes)."""

    def __init__(self, path: str | os.PathLike[str], color_constancy: bool = False) -> None:
        self.store = CropStore(path)
        self.path, self.color_constancy = self.store.path, color_constancy

    def keys(self) -> list[str]:
        return CropStore.ids(self.path)

    def image(self, isic_id: str) -> np.ndarray:
        return self.decode(isic_id, self.store.read_bytes(isic_id))

    def read_bytes(self, isic_id: str) -> bytes:
        return self.store.read_bytes(isic_id)

    def size(self, isic_id: str) -> tuple[int, int] | None:
        return self.store.size(isic_id)

    def decode(self, isic_id: str, data: bytes, out: np.ndarray | None = None) -> np.ndarray:
        """The crop from its bytes (``read_bytes``), as :meth:`image` returns it; ``out``: a
        contiguous buffer to decode into (it is then a view of ``out``)."""
        img = decode_named(data, isic_id, self.path, FAST_DECODE, out)
        if not self.color_constancy:
            return img
        img[...] = shades_of_gray(img)
        return img


class FolderSource:
    """A folder of JPEG crops; the file stem is the ``isic_id``."""

    def __init__(self, folder: str | os.PathLike[str], color_constancy: bool = False) -> None:
        self.path = Path(folder)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: image folder not found")
        self.files = {p.stem: p for p in sorted(self.path.iterdir())
                      if p.suffix in JPEG_SUFFIXES and p.is_file()}
        if not self.files:
            raise FileNotFoundError(f"{self.path}: no .jpg/.jpeg files")
        self.color_constancy = color_constancy

    def keys(self) -> list[str]:
        return list(self.files)

    def image(self, isic_id: str) -> np.ndarray:
        path = self.files.get(isic_id)
        if path is None:
            raise BadImageError(f"{self.path}: no image for isic_id {isic_id!r}", isic_id,
                                self.path)
        img = decode_named(path.read_bytes(), isic_id, path, FAST_DECODE)
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


def open_source(path: str | os.PathLike[str],
                color_constancy: bool = False) -> HDF5Source | FolderSource:
    """An HDF5 crop file or a folder of JPEGs, by what ``path`` is."""
    p = Path(path)
    if p.is_dir():
        return FolderSource(p, color_constancy)
    return HDF5Source(p, color_constancy)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 numpy (possibly a read-only or strided view) -> contiguous CHW uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def _finish() -> list[Any]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


def eval_transform(size: int) -> v2.Compose:
    """Resize to ``size`` x ``size`` (a no-op on cached crops), scale, normalise."""
    return v2.Compose([v2.Resize((size, size), antialias=True), *_finish()])


def train_transform(size: int, augment: Augment) -> v2.Compose:
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
                 tab: np.ndarray | None = None, threads: int = 0) -> None:
        self.source = source if hasattr(source, "image") else open_source(source)
        self.ids = list(ids)
        self.transform = transform
        self.threads = threads  # > 0, no transform: a batch decoded by that many threads
        self._pool: tuple[int, ThreadPoolExecutor] | None = None
        self._ring: list[torch.Tensor | None] = [None] * RING  # batch buffers (threads, no tf)
        self._made = 0
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

    def __getstate__(self) -> dict[str, Any]:  # a thread pool does not travel to a worker
        return {**self.__dict__, "_pool": None, "_ring": [None] * RING}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]] | dict[str, Any]:
        """A batch's samples (the DataLoader's batched fetch). With ``threads``, the crops are
        read and decoded by a thread pool of this process: the JPEG decoder releases the GIL,
        so threads decode in parallel and the pixels never cross a process boundary (a loader
        worker process pays more to send a batch through shared memory than to decode it,
        loader.json): the batch itself, decoded crops only (no transform: the augmentation is
        the device's). Without threads, or with a transform, one sample after the other, as
        the DataLoader would."""
        if not self.threads or self.transform is not None:
            return [self[i] for i in indices]
        pid = os.getpid()
        if self._pool is None or self._pool[0] != pid:
            self._pool = (pid, ThreadPoolExecutor(self.threads, thread_name_prefix="decode"))
        pool = self._pool[1]
        if hasattr(self.source, "read_bytes"):
            return self._decode_into_batch(indices, pool)

        def decode(rows: range) -> list[np.ndarray]:
            return [self.source.image(self.ids[indices[r]]) for r in rows]

        images = [im for part in pool.map(decode, slices(len(indices), self.threads))
                  for im in part]
        image, hw = padded_batch(images, pool, self.threads)  # the batch, built here
        return {**self._rows(indices), "image": image, "hw": hw}

    def _decode_into_batch(self, indices: list[int], pool: ThreadPoolExecutor
                           ) -> dict[str, Any]:
        """Bytes read and JPEG headers parsed here (microseconds), the batch allocated at its
        size, then each thread decodes its slice of the crops and copies each into place:
        nothing waits for the whole batch to be decoded."""
        ids = [self.ids[i] for i in indices]
        known = getattr(self.source, "size", None)  # recorded by CropStore.index(sizes=True)
        sizes = [known(k) for k in ids] if known is not None else [None]
        blobs: list[bytes] | None = None
        if None in sizes:  # read here, sized from the headers
            blobs = [self.source.read_bytes(k) for k in ids]
            sizes = [jpeg_size(b, k, self.source.path) for b, k in zip(blobs, ids, strict=True)]
        # batches take turns in RING buffers: a batch stays intact while fewer than RING later
        # ones are made (the loop holds two: the one training and the one fetched ahead)
        slot, self._made = self._made % RING, self._made + 1
        buf = self._ring[slot]
        image, hw, view = packed_canvas(sizes, buf)
        if buf is None or buf.numel() < view.size:  # a new, larger buffer: kept for its turn
            self._ring[slot] = image.reshape(-1)

        def fill(rows: range) -> None:
            for r in rows:
                h, w = sizes[r]
                data = blobs[r] if blobs is not None else self.source.read_bytes(ids[r])
                image = self.source.decode(ids[r], data, view[r])  # straight into its slot
                if image.shape[:2] != (h, w):
                    raise BadImageError(f"{self.source.path}: crop {ids[r]!r} decodes to "
                                        f"{image.shape[:2]}, its header said {(h, w)}",
                                        ids[r], self.source.path)

        list(pool.map(fill, slices(len(ids), self.threads)))
        return {**self._rows(indices), "image": image, "hw": torch.from_numpy(hw)}

    def _rows(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """The batch's target, tab and index tensors, as the default collate makes them."""
        idx = np.asarray(indices)
        tab = (self.tab[idx] if self.tab is not None else np.zeros((len(idx), 0), np.float32))
        return {"target": torch.from_numpy(self.targets[idx]), "tab": torch.from_numpy(tab),
                "index": torch.from_numpy(idx.astype(np.int64))}

    def _row(self, i: int) -> dict[str, Any]:
        # numpy target and tab rows: the collate makes one tensor of each per batch (a tensor
        # per sample cost a third of a decode, in every loader worker)
        return {"target": self.targets[i], "tab": self.tab[i] if self.tab is not None else NO_TAB,
                "index": i}

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.source.image(self.ids[i])  # transform None: the decoded HWC crop as is,
        return {**self._row(i), "image": image if self.transform is None  # (collate_padded)
                else self.transform(_to_tensor(image))}


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
