"""The HDF5 crop store: real layout, lazy per-process handles, clear errors."""

import multiprocessing as mp
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from isicstack.data.crops import BadImageError, CropStore, encode_jpeg, write_crops
from isicstack.data.io import DataError


def _image(seed: int, size: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


@pytest.fixture()
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "train-image.hdf5"
    write_crops(path, [(f"ISIC_{i:07d}", encode_jpeg(_image(i))) for i in range(6)])
    return path


def test_reads_kaggle_test_file(kaggle_fixtures: Path, kaggle_is_real: bool):
    store = CropStore(kaggle_fixtures / "test-image.hdf5")
    ids = (kaggle_fixtures / "test-metadata.csv").read_text().splitlines()[1:]
    assert sorted(store.keys()) == sorted(line.split(",")[0] for line in ids)
    if kaggle_is_real:
        assert sorted(store.keys()) == ["ISIC_0015657", "ISIC_0015729", "ISIC_0015740"]
    for key in store:
        img = store.read(key)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        assert img.shape[0] == img.shape[1]


def test_writer_layout_matches_kaggle(store_path: Path):
    with h5py.File(store_path) as f:
        ds = f["ISIC_0000003"]
        assert ds.shape == () and ds.dtype.kind == "S"
    store = CropStore(store_path)
    assert len(store) == 6 and "ISIC_0000003" in store and "x" not in store
    assert store.read("ISIC_0000003").shape == (20, 20, 3)


def test_void_values_accepted(tmp_path: Path):
    path = tmp_path / "void.hdf5"
    data = encode_jpeg(_image(1))
    with h5py.File(path, "w") as f:
        f.create_dataset("ISIC_1", data=np.void(data))
    assert CropStore(path).read_bytes("ISIC_1") == data


def test_missing_id_and_bad_bytes(tmp_path: Path, store_path: Path):
    store = CropStore(store_path)
    with pytest.raises(BadImageError, match=r"train-image.hdf5.*ISIC_9"):
        store.read("ISIC_9")
    bad = tmp_path / "bad.hdf5"
    write_crops(bad, [("ISIC_X", b"not a jpeg\x00\x01")])
    with pytest.raises(DataError, match=r"bad.hdf5.*ISIC_X"):
        CropStore(bad).read("ISIC_X")
    with pytest.raises(FileNotFoundError, match="missing.hdf5"):
        CropStore(tmp_path / "missing.hdf5")


def test_lazy_open_and_pickle(store_path: Path):
    store = CropStore(store_path)
    assert store._file is None  # nothing opened until first read
    store.read("ISIC_0000001")
    clone = pickle.loads(pickle.dumps(store))
    assert clone._file is None
    assert np.array_equal(clone.read("ISIC_0000001"), store.read("ISIC_0000001"))


def test_index_once_then_plain_reads(store_path: Path, monkeypatch):
    """index() looks every crop up once; the extents travel with the pickled store, so a
    worker's reads never ask HDF5 where a crop is (h5d.open is not called again)."""
    store = CropStore(store_path)
    assert store.index(["ISIC_0000001", "ISIC_0000002", "nope"]) == 2
    assert store.index() == 4  # the other keys; the two known ones are not looked up again
    clone = pickle.loads(pickle.dumps(store))
    calls = []
    real_open = h5py.h5d.open
    monkeypatch.setattr(h5py.h5d, "open", lambda *a: calls.append(a) or real_open(*a))
    with h5py.File(store_path) as f:
        for key in f:
            assert clone.read_bytes(key) == bytes(f[key][()])
    assert calls == []
    with pytest.raises(BadImageError, match="nope"):
        clone.read_bytes("nope")


def _read_in_child(store: CropStore) -> tuple[int, int]:
    return store.read("ISIC_0000002").shape[:2]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_store_used_from_child_processes(store_path: Path, method: str):
    store = CropStore(store_path)
    store.read("ISIC_0000000")  # parent holds an open handle
    with mp.get_context(method).Pool(2) as pool:
        assert pool.map(_read_in_child, [store] * 4) == [(20, 20)] * 4


def test_duplicate_write_is_error_and_leaves_nothing(tmp_path: Path):
    path = tmp_path / "dup.hdf5"
    with pytest.raises(DataError, match="duplicate"):
        write_crops(path, [("A", b"1"), ("A", b"2")])
    assert not path.exists()
