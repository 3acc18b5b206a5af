"""Where the prediction log lives: a folder that takes writes (checked at start, so a
read-only location or a full disk is an error before the first request, not a 503 after it)
and files readable by their owner only (mode 0600 from creation: the log holds pseudonymous
health data)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import threading
from pathlib import Path

log = logging.getLogger(__name__)

MODE = 0o600
MIN_FREE_BYTES = 64 * 2**20  # check_writable: less free space than this is "disk full"


class LogLocationError(ValueError):
    """The log cannot be created or written where asked (read-only, full disk, wrong key)."""


def _create_private(path: Path, data: bytes = b"") -> None:
    """Create ``path`` with mode 0600 from the start (no window with a looser mode)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private(path: Path) -> None:
    """Repair a log file (or its -wal/-shm/.key) readable by others to 0600, with a warning."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.key")):
        if not p.exists():
            continue
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            try:
                os.chmod(p, MODE)
            except OSError as err:
                raise LogLocationError(f"prediction log {p} has mode {mode:o} (readable by "
                                       f"others) and cannot be set to 600: {err}") from err
            log.warning("prediction log %s had mode %o (readable by others): set to 600", p, mode)


def _probe(folder: Path) -> None:
    """Write, fsync and remove a small file in ``folder`` (raises the OS error if it cannot)."""
    probe = folder / f".predlog-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        _create_private(probe, b"\0" * 4096)
    finally:
        with contextlib.suppress(FileNotFoundError):
            probe.unlink()


def check_writable(path: str | os.PathLike[str], min_free: int = MIN_FREE_BYTES) -> Path:
    """Fail at start, not at the first request: ``path``'s folder must exist (or be creatable),
    accept a write, and have ``min_free`` bytes free; the log itself, if present, writable."""
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe(folder)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, "the log file is not writable", str(path))
    except OSError as err:
        why = {errno.EROFS: "a read-only file system", errno.EACCES: "not writable (permission)",
               errno.EPERM: "not writable (permission)", errno.ENOSPC: "the disk is full",
               errno.EDQUOT: "the disk quota is exceeded", errno.EFBIG: "a file size limit"
               }.get(err.errno or 0, err.strerror or str(err))
        raise LogLocationError(f"prediction log {path}: cannot write in {folder}: {why} "
                               "(set log= to a writable location)") from err
    free = shutil.disk_usage(folder).free
    if free < min_free:
        raise LogLocationError(f"prediction log {path}: the disk holding {folder} is full "
                               f"({free / 2**20:.1f} MiB free, need {min_free / 2**20:.0f} MiB)")
    return path
