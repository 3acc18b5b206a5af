"""Decode-once crop cache: every needed crop decoded and resized to the model's input size once.

On a CPU, decoding and resizing a JPEG per sample costs as much as the small network's step, and
a fold re-reads every training crop many times (five folds x two image runs). The cache decodes
each crop once into a uint8 (N, S, S, 3) array saved as ``.npy`` under ``artifacts/cache/`` and
memory-mapped afterwards, so folds, runs and DataLoader workers share one copy. Its file name
is a hash of what it was made from (crop file content, ids, size, colour constancy), so a
changed input never reuses a stale cache. A crop that cannot be decoded stops the build with its
``isic_id`` and file, or with ``data.on_bad_image: skip`` is listed and left out.

Streamed crops (``data.data_mode: stream``) are not cached, but :func:`check_crops` decodes each
once (in the loader workers) so that a bad crop is found before training, not mid-fold: named,
or listed and left out of the training rows. Its verdict is kept under the same content key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as tvf

from isicstack.data.crops import BadImageError
from isicstack.data.io import atomic_path, write_json
from isicstack.data.provenance import file_sha256
from isicstack.vision.data import ImageSource, open_source

log = logging.getLogger(__name__)

OnBad = Literal["error", "skip"]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """HWC uint8 -> (size, size, 3) uint8, antialiased (what the eval transform would do)."""
    if image.shape[:2] == (size, size):
        return np.ascontiguousarray(image)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return tvf.resize(x, [size, size], antialias=True).permute(1, 2, 0).numpy()


def read_resized(source: ImageSource, ids: list[str], size: int, on_bad: OnBad = "error"
                 ) -> tuple[np.ndarray, list[str]]:
    """Decoded, resized crops of ``ids`` (N, size, size, 3) and the ids that failed (``skip``).

    A failed crop's slot stays zero; the caller leaves it out of training.
    """
    out = np.zeros((len(ids), size, size, 3), np.uint8)
    bad: list[str] = []
    for i, isic_id in enumerate(ids):
        try:
            out[i] = resize_square(source.image(isic_id), size)
        except BadImageError as err:
            if on_bad == "error":
                raise
            log.warning("skipping crop: %s", err)
            bad.append(isic_id)
    return out, bad


class CachedSource:
    """Crops from a cache file, memory-mapped; pickles by path (workers map it themselves)."""

    def __init__(self, path: str | os.PathLike[str], ids: list[str]) -> None:
        self.path = Path(path)
        self.ids = list(ids)
        self.row = {k: i for i, k in enumerate(self.ids)}
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        return {"path": self.path, "ids": self.ids, "row": self.row, "_array": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def keys(self) -> list[str]:
        return list(self.ids)

    def image(self, isic_id: str) -> np.ndarray:
        i = self.row.get(isic_id)
        if i is None:
            raise BadImageError(f"{self.path}: crop cache has no isic_id {isic_id!r}", isic_id,
                                self.path)
        return np.array(self.array[i])  # a writable copy of the mapped row


def cache_key(images: Path, ids: list[str], size: int, color_constancy: bool) -> str:
    """Hash of everything the cached pixels depend on."""
    h = hashlib.sha256()
    h.update(json.dumps([file_sha256(images) if images.is_file() else str(images.resolve()),
                         size, bool(color_constancy), 1]).encode())
    h.update("\n".join(ids).encode())
    return h.hexdigest()[:20]


def build_cache(source: ImageSource, images: Path, ids: list[str], size: int,
                color_constancy: bool, folder: Path, on_bad: OnBad = "error"
                ) -> tuple[CachedSource, list[str]]:
    """The cache of ``ids`` (made now, or reused when an identical one exists) and bad ids."""
    key = cache_key(images, ids, size, color_constancy)
    path = folder / f"crops-{size}px-{key}.npy"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        bad = json.loads(meta.read_text())["bad_ids"]
        if bad and on_bad == "error":  # made by a `skip` run: this run must still stop
            _raise_first(source, images, bad)
        log.info("crop cache: reusing %s (%d crops)", path, len(ids))
        return CachedSource(path, ids), bad
    array, bad = read_resized(source, ids, size, on_bad)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    write_json({"images": str(images), "size": size, "color_constancy": color_constancy,
                "n": len(ids), "bad_ids": bad}, meta)
    log.info("crop cache: wrote %s (%d crops at %dpx, %.0f MB)", path, len(ids), size,
             array.nbytes / 2**20)
    return CachedSource(path, ids), bad


def _raise_first(source: ImageSource, images: Path, bad: list[str]) -> None:
    """Raise the decoder's own error for the first known-bad crop (it names id and file)."""
    source.image(bad[0])  # raises BadImageError
    raise BadImageError(f"{images}: crop {bad[0]!r} is not a decodable JPEG", bad[0], images)


class _Probe(Dataset):
    """Item ``i`` decodes crop ``ids[i]`` and returns its error message ("" when it decodes)."""

    def __init__(self, source: ImageSource, ids: list[str]) -> None:
        self.source, self.ids = source, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> str:
        try:
            self.source.image(self.ids[i])
        except BadImageError as err:
            return str(err)
        return ""


def check_crops(images: Path, ids: list[str], folder: Path, on_bad: OnBad = "error",
                workers: int = 0, batch: int = 256) -> list[str]:
    """The ids whose crop does not decode, found before training (stream mode).

    Each crop is decoded once, spread over ``workers`` processes: one decode per crop against
    the many of training, and it keeps a bad crop from stopping a fold hours in or from being
    drawn into training. ``error``: the first bad crop raises, naming its id and file. The
    verdict is saved under ``folder`` by content key, so later runs on the same crops skip it.
    """
    path = folder / f"checked-{cache_key(images, ids, 0, False)}.json"
    source = open_source(images)
    if path.is_file():
        bad = json.loads(path.read_text())["bad_ids"]
        if bad and on_bad == "error":
            _raise_first(source, images, bad)
        return bad
    loader = DataLoader(_Probe(source, ids), batch_size=batch, num_workers=workers,
                        collate_fn=list)
    bad = []
    for start, messages in zip(range(0, len(ids), batch), loader, strict=True):
        for j, message in enumerate(messages):
            if not message:
                continue
            if on_bad == "error":
                raise BadImageError(message, ids[start + j], images)
            log.warning("skipping crop: %s", message)
            bad.append(ids[start + j])
    write_json({"images": str(images), "n": len(ids), "bad_ids": bad}, path)
    log.info("crop check: %d crops of %s decode, %d do not", len(ids) - len(bad), images,
             len(bad))
    return bad
