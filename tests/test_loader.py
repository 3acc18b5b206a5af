"""The stream loader's parts: the store's raw reads give h5py's bytes, every DataLoader worker
opens its own handle (none is opened by the constructor), and the cheap colour jitter is
torchvision's ColorJitter."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from bench_scripts import load_script
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as tvf

from isicstack.data import crops
from isicstack.data.crops import BadImageError, CropStore, encode_jpeg, write_crops
from isicstack.vision.augment import ColourJitter, adjust_hue
from isicstack.vision.data import train_transform

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _reference(f: h5py.File, key: str) -> bytes:
    """What the store returned before raw reads: h5py's value, as bytes."""
    value = f[key][()]
    return value.tobytes() if isinstance(value, (np.void, np.ndarray)) else bytes(value)


@pytest.fixture()
def layouts(tmp_path: Path) -> Path:
    """One dataset per storage layout and type a crop file may use."""
    path = tmp_path / "layouts.hdf5"
    jpeg = encode_jpeg(np.full((9, 7, 3), 120, np.uint8))
    with h5py.File(path, "w") as f:
        f.create_dataset("kaggle", data=np.bytes_(jpeg))
        f.create_dataset("padded", data=np.array(jpeg, dtype=f"S{len(jpeg) + 5}"))
        f.create_dataset("opaque", data=np.void(jpeg + b"\x00"))
        f.create_dataset("uint8", data=np.frombuffer(jpeg, np.uint8))
        f.create_dataset("chunked", data=np.frombuffer(jpeg, np.uint8), chunks=(64,))
        tid = h5py.h5t.py_create(np.dtype(f"S{len(jpeg)}"))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        compact = h5py.h5d.create(f.id, b"compact", tid, h5py.h5s.create(h5py.h5s.SCALAR),
                                  dcpl=dcpl)
        compact.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(jpeg, dtype=f"S{len(jpeg)}"))
        f.create_group("group")
    return path


def test_store_reads_h5py_bytes_raw_where_it_can(layouts: Path):
    store = CropStore(layouts)
    with h5py.File(layouts, "r") as f:
        for key in ("kaggle", "padded", "opaque", "uint8", "chunked", "compact"):
            assert store.read_bytes(key) == store.read_bytes(key) == _reference(f, key), key
    assert store.read("padded").shape == (9, 7, 3)  # trailing NULs dropped, as numpy does
    raw = {k for k, where in store._where.items() if where is not None}
    assert raw == {"kaggle", "padded", "opaque", "uint8"}  # chunked, compact: through h5py
    for key in ("missing", "group", ""):
        with pytest.raises(BadImageError, match="no crop"):
            store.read_bytes(key)


def test_store_falls_back_to_h5py_when_the_raw_bytes_differ(layouts: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    real = crops._extent
    monkeypatch.setattr(crops, "_extent", lambda d: (lambda o, n, s: (o + 1, n, s))(*real(d)))
    store = CropStore(layouts)
    with h5py.File(layouts, "r") as f:
        assert store.read_bytes("kaggle") == _reference(f, "kaggle")  # checked, then h5py
        assert store._fd is None and not store._where
        assert store.read_bytes("opaque") == _reference(f, "opaque")


class _WhoRead(Dataset):
    """Item i: (pid of the reader, pid the store's handle belongs to, crop shape)."""

    def __init__(self, store: CropStore, ids: list[str]) -> None:
        self.store, self.ids = store, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[int, int, int]:
        shape = self.store.read(self.ids[i]).shape
        return os.getpid(), int(self.store._pid), shape[0]


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_each_worker_opens_its_own_handle(tmp_path: Path, ctx: str):
    if ctx not in mp.get_all_start_methods():
        pytest.skip(f"{ctx} not available")
    path = tmp_path / "crops.hdf5"
    ids = [f"ISIC_{i}" for i in range(16)]
    write_crops(path, [(i, encode_jpeg(np.full((12, 12, 3), 90, np.uint8))) for i in ids])
    store = CropStore(path)
    assert store._file is None and store._fd is None  # the constructor opens nothing
    loader = DataLoader(_WhoRead(store, ids), batch_size=2, num_workers=2,
                        multiprocessing_context=ctx, collate_fn=list)
    seen = [item for batch in loader for item in batch]
    readers = {pid for pid, _, _ in seen}
    assert len(seen) == 16 and len(readers) == 2 and os.getpid() not in readers
    assert all(pid == owner for pid, owner, _ in seen)  # each read on the worker's own handle
    assert store._file is None and store._fd is None, "the parent opened the file"
    store.read(ids[0])
    clone = pickle.loads(pickle.dumps(store))
    assert clone._file is None and clone._fd is None  # handles never travel; extents do
    assert clone._where == store._where


def test_colour_jitter_is_torchvisions():
    rng = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 40, 32, generator=rng) for _ in range(30)]
    images.append(torch.randint(0, 3, (3, 16, 16), generator=rng).float() / 2)  # ties, greys
    ref = v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2, 0.02)], p=0.8)
    mine, applied = ColourJitter(0.2, 0.2, 0.2, 0.02, p=0.8), 0
    for seed, x in enumerate(images):
        torch.manual_seed(seed)
        a = ref(x)
        torch.manual_seed(seed)
        b = mine(x)
        assert b.dtype == torch.float32 and b.shape == x.shape
        assert torch.allclose(a, b, atol=1e-5), seed
        applied += not torch.equal(b, x)
    assert 15 < applied < len(images)  # p=0.8: applied to most, not all
    for shift in (0.02, -0.02, 0.3, -0.5):
        for x in images[-3:]:
            got = torch.from_numpy(adjust_hue(x.numpy(), shift))
            assert torch.allclose(got, tvf.adjust_hue(x, shift), atol=1e-5)


def test_strong_transform_is_seeded_and_normalised():
    x = torch.randint(0, 256, (3, 50, 44), dtype=torch.uint8)
    tf = train_transform(32, "strong")
    torch.manual_seed(3)
    a = tf(x)
    torch.manual_seed(3)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, tf(x))
    assert float(a.min()) > -2.2 and float(a.max()) < 2.7  # ImageNet-normalised [0, 1]


def _bench_loader():
    module = load_script("bench_loader")
    return module


def test_bench_loader_gpu_feed_formula():
    bench = _bench_loader()
    missing = bench.gpu_feed(812.4, None)
    assert missing["gpu_train_img_s"] == "missing" and missing["loader_cores"] == "missing"
    assert missing["per_worker_img_s"] == 812.4
    assert bench.gpu_feed(800.0, 8001.0)["loader_cores"] == 11  # ceil(8001 / 800)
