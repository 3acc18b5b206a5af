"""HDF5 crop store in the Kaggle layout: one dataset per ``isic_id`` holding JPEG bytes.

The file is opened lazily, once per process: a handle opened in the parent (e.g. in a
``Dataset.__init__``) cannot be used by forked or spawned DataLoader workers, which is the bug
the winning repositories shipped. The store pickles without its handle.

Reading: h5py's ``f[key][()]`` costs about twice a decode of the crop it returns (a Python
Dataset object, a dataspace and a type conversion per key; ``benchmarks/results/loader.json``).
A crop stored the Kaggle way (a contiguous scalar of fixed-length bytes) sits as plain bytes in
the file, so the store asks HDF5 once per key where (``H5Dget_offset``) and reads those bytes
with ``os.pread``: the same bytes (checked against h5py on each process's first read), several
times faster, and far faster on a repeated read (loader.json, ``stage_us``). Any other layout
goes through h5py.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from isicstack.data.io import DataError, atomic_path

try:  # simplejpeg decodes ~2.5x faster than PIL on these small crops
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a declared dependency
    simplejpeg = None


def decode_jpeg(data: bytes, fast: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Decode JPEG bytes to an RGB ``uint8`` array of shape (H, W, 3).

    The project's one JPEG decoder. ``fast`` uses libjpeg-turbo's fast DCT and upsampling
    (training input, where +-1 grey level does not matter); the default is exact. ``out``: a
    contiguous uint8 buffer of at least H * W * 3 to decode into (a batch's slot: no copy).
    """
    if simplejpeg is not None:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fast, fastupsample=fast,
                                      buffer=out)

    with Image.open(io.BytesIO(data)) as im:
        image = np.asarray(im.convert("RGB"))
    if out is None:
        return image
    placed = out[: image.size].reshape(image.shape)
    placed[...] = image
    return placed


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """Encode an RGB ``uint8`` array (H, W, 3) as JPEG bytes."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if simplejpeg is not None:
        return simplejpeg.encode_jpeg(image, quality=quality, colorspace="RGB")

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class BadImageError(DataError):
    """A crop that is missing or cannot be decoded; ``isic_id`` and ``path`` say which."""

    def __init__(self, message: str, isic_id: str, path: str | os.PathLike[str]) -> None:
        super().__init__(message)
        self.isic_id, self.path = isic_id, str(path)


def jpeg_size(data: bytes, isic_id: str, path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) of a JPEG from its header alone (a batch's canvas is sized before its
    crops are decoded); an unreadable header is a BadImageError naming the crop."""
    try:
        if simplejpeg is not None:
            h, w = simplejpeg.decode_jpeg_header(data)[:2]
            return int(h), int(w)

        with Image.open(io.BytesIO(data)) as im:
            return int(im.height), int(im.width)
    except Exception as err:
        raise BadImageError(f"{path}: crop {isic_id!r} is not a decodable JPEG ({err})",
                            isic_id, path) from err


def decode_named(data: bytes, isic_id: str, path: str | os.PathLike[str],
                 fast: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`decode_jpeg` whose failure names the crop and its file (libjpeg's own message
    names neither)."""
    try:
        image = decode_jpeg(data, fast, out)
    except Exception as err:
        raise BadImageError(f"{path}: crop {isic_id!r} is not a decodable JPEG ({err})",
                            isic_id, path) from err
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise BadImageError(f"{path}: crop {isic_id!r} decodes to shape {image.shape}, "
                            "expected an RGB image", isic_id, path)
    return image


class CropStore:
    """Read-only access to ``{isic_id: JPEG bytes}`` in an HDF5 file, safe across workers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: HDF5 crop file not found")
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._fd: int | None = None  # this process's plain descriptor for os.pread
        self._where: dict[str, _Extent | None] = {}  # key -> its bytes in the file, or None
        self._sizes: dict[str, tuple[int, int]] = {}  # key -> (height, width), when indexed
        self._checked = False  # the first raw read of this process was compared with h5py

    def _handle(self) -> h5py.File:
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            try:
                self._file = h5py.File(self.path, "r")
                self._fd = os.open(self.path, os.O_RDONLY)
            except OSError as err:
                raise DataError(f"{self.path}: not a readable HDF5 file ({err})") from err
            self._pid, self._checked = pid, False
        return self._file

    def __getstate__(self) -> dict:  # the extents travel: a spawned worker need not look up
        return {"path": self.path, "_file": None, "_pid": None, "_fd": None,
                "_where": self._where, "_sizes": self._sizes, "_checked": False}

    def index(self, ids: Iterable[str] | None = None, sizes: bool = False) -> int:
        """Look up where each crop of ``ids`` (default: every key) lies in the file, once, in
        this process: loader workers forked or spawned after it read each crop with one
        ``os.pread`` from their first read on, instead of each worker asking HDF5 per key
        (the dataset open is most of a first read: loader.json ``stage_us``). Returns the
        number of keys looked up; a key not in the file is left for its read to report.
        ``sizes``: also each crop's (height, width) from its JPEG header (:meth:`size`), so a
        batch can be laid out before any of its crops is read."""
        f = self._handle()
        n = 0
        for isic_id in self.keys() if ids is None else ids:
            if isic_id in self._where:
                continue
            try:
                dsid = h5py.h5d.open(f.id, isic_id.encode())
            except (KeyError, ValueError, UnicodeEncodeError):
                continue
            self._where[isic_id] = _extent(dsid)
            n += 1
            if sizes:  # a crop whose header does not parse: its read reports it, naming it
                with contextlib.suppress(BadImageError):
                    self._sizes[isic_id] = jpeg_size(self.read_bytes(isic_id), isic_id,
                                                     self.path)
        return n

    def size(self, isic_id: str) -> tuple[int, int] | None:
        """(height, width) recorded by ``index(..., sizes=True)``, else None."""
        return self._sizes.get(isic_id)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def close(self) -> None:
        """Close this process's handle (reopened on next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
            if self._fd is not None:
                os.close(self._fd)
        self._file = None
        self._pid = None
        self._fd = None

    def __enter__(self) -> CropStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def keys(self) -> list[str]:
        """All ``isic_id`` keys in the file."""
        return list(self._handle().keys())

    @classmethod
    def ids(cls, path: str | os.PathLike[str]) -> list[str]:
        """All ``isic_id`` keys of ``path``, the handle closed again (no worker inherits it)."""
        with cls(path) as store:
            return store.keys()

    def __len__(self) -> int:
        return len(self._handle())

    def __contains__(self, isic_id: object) -> bool:
        return isinstance(isic_id, str) and isic_id in self._handle()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def read_bytes(self, isic_id: str) -> bytes:
        """Raw JPEG bytes of ``isic_id``; accepts scalar ``|S<n>`` and ``np.void`` datasets."""
        f = self._handle()
        where = self._where.get(isic_id, _UNSEEN)
        if where is _UNSEEN:
            try:
                dsid = h5py.h5d.open(f.id, isic_id.encode())
            except (KeyError, ValueError, UnicodeEncodeError):
                raise BadImageError(f"{self.path}: no crop for isic_id {isic_id!r}", isic_id,
                                    self.path) from None
            where = self._where[isic_id] = _extent(dsid)
        if where is not None and self._fd is not None:
            offset, size, strip = where
            data = os.pread(self._fd, size, offset)
            data = data.rstrip(b"\0") if strip else data
            if self._checked:
                return data
            self._checked = True
            if data == self._h5py_bytes(f, isic_id):
                return data
            os.close(self._fd)  # not where HDF5 said: read everything through h5py
            self._where.clear()
            self._fd = None
        return self._h5py_bytes(f, isic_id)

    def _h5py_bytes(self, f: h5py.File, isic_id: str) -> bytes:
        value = f[isic_id][()]
        if isinstance(value, np.void):
            return value.tobytes()
        if isinstance(value, (bytes, np.bytes_)):
            return bytes(value)
        if isinstance(value, np.ndarray) and value.dtype == np.uint8:
            return value.tobytes()
        raise DataError(
            f"{self.path}: crop {isic_id!r} has unsupported HDF5 type {type(value).__name__}"
        )

    def read(self, isic_id: str, fast: bool = False) -> np.ndarray:
        """Decoded RGB ``uint8`` crop of ``isic_id``; a corrupt one is a DataError naming it."""
        return decode_named(self.read_bytes(isic_id), isic_id, self.path, fast)


_Extent = tuple[int, int, bool]  # offset, size, strip trailing NULs (as numpy's bytes_ does)
_UNSEEN: object = object()


def _extent(dsid: h5py.h5d.DatasetID) -> _Extent | None:
    """Where a dataset's value lies in the file as the bytes :meth:`CropStore.read_bytes`
    returns, or None when it must be read through h5py (chunked, compact, other types)."""
    offset, size = dsid.get_offset(), dsid.get_storage_size()
    if offset is None or size <= 0:  # HDF5 gives an offset for contiguous storage only
        return None
    t, scalar = dsid.get_type(), dsid.shape == ()
    kind = t.get_class()
    if kind == h5py.h5t.STRING and scalar and not t.is_variable_str() \
            and t.get_strpad() == h5py.h5t.STR_NULLPAD:
        return offset, size, True
    if kind == h5py.h5t.OPAQUE and scalar:
        return offset, size, False
    if kind == h5py.h5t.INTEGER and not scalar and t.get_size() == 1 \
            and t.get_sign() == h5py.h5t.SGN_NONE:
        return offset, size, False
    return None


def write_crops(
    path: str | os.PathLike[str], items: Iterable[tuple[str, bytes]]
) -> int:
    """Write ``(isic_id, jpeg_bytes)`` pairs in the Kaggle layout, atomically; return the count.

    Values are stored as scalar ``np.bytes_`` (``|S<n>``) like the official files; plain
    ``bytes`` would be rejected by h5py on embedded NULs.
    """
    n = 0
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for isic_id, data in items:
            if isic_id in f:
                raise DataError(f"{path}: duplicate isic_id {isic_id!r} while writing crops")
            f.create_dataset(isic_id, data=np.bytes_(data))
            n += 1
    return n
