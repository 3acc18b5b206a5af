"""The prediction log: every scored lesion a row, committed before its answer is sent.

SQLite, one file: no server to run beside ``isic serve``, readable by ``isic monitor`` and any
SQL tool, and crash-safe with ``journal_mode=WAL`` + ``synchronous=FULL`` (a committed row
survives a SIGKILL or a power cut; readers in other processes never block the writer). The file
is created with mode 0600 (its -wal/-shm files inherit it); a looser mode found at open is
repaired with a warning naming the file.

Pseudonymisation: ``patient_id`` is never stored; the log holds ``HMAC-SHA256(key, patient_id)``.
The key comes from the environment (``ISIC_LOG_KEY``, :func:`key_from_env`). Without it a log
refuses to open for writing unless ``allow_unkeyed=True`` (a development server on loopback,
``make serve`` on a fresh clone): then a random key is generated once per log and kept in
``<log>.key`` (mode 0600) beside it, not inside it, so a copy of the log alone cannot re-hash
candidate ids. Each log records its key's fingerprint (``meta.key_id``): a log opened with
another key is refused rather than silently mixing two hashes (``forget_patient`` would miss).

Concurrency: one connection per thread (``threading.local``); a write is one ``BEGIN
IMMEDIATE`` ... ``COMMIT``. ``secure_delete`` is on, so a forgotten patient's rows are
overwritten, and forgetting checkpoints the WAL.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.serving.log_file import (
    LogLocationError,
    _create_private,
    check_writable,
    ensure_private,
)

log = logging.getLogger(__name__)

KEY_ENV = "ISIC_LOG_KEY"
FORMAT = 1
CROP_STATS = ("crop_width", "crop_height", "brightness", "mean_r", "mean_g", "mean_b")
REQUIRED = ("request_id", "lesion_id", "patient_id", "model_version", "scorer", "model",
            "score", "flag")
REASONS = ("biopsy", "audit")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
  id INTEGER PRIMARY KEY, ts REAL NOT NULL, request_id TEXT NOT NULL, lesion_id TEXT NOT NULL,
  patient_hash TEXT NOT NULL, model_version TEXT NOT NULL, scorer TEXT NOT NULL,
  model TEXT NOT NULL, inputs TEXT NOT NULL, crop_sha256 TEXT, crop_bytes INTEGER,
  {", ".join(f"{c} REAL" for c in CROP_STATS)}, crop BLOB, score REAL NOT NULL, risk REAL,
  flag INTEGER NOT NULL, latency_ms REAL);
CREATE INDEX IF NOT EXISTS predictions_lesion ON predictions (lesion_id);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE INDEX IF NOT EXISTS predictions_patient ON predictions (patient_hash);
CREATE TABLE IF NOT EXISTS outcomes (
  id INTEGER PRIMARY KEY, ts REAL NOT NULL, lesion_id TEXT NOT NULL,
  label INTEGER NOT NULL CHECK (label IN (0, 1)), reason TEXT NOT NULL, request_id TEXT);
CREATE INDEX IF NOT EXISTS outcomes_lesion ON outcomes (lesion_id);
"""
COLUMNS = ("ts", "request_id", "lesion_id", "patient_hash", "model_version", "scorer", "model",
           "inputs", "crop_sha256", "crop_bytes", *CROP_STATS, "crop", "score", "risk", "flag",
           "latency_ms")


class LogWriteError(RuntimeError):
    """A row was not committed (SQLite or OS failure, or a malformed row): do not acknowledge."""


class UnknownLesion(LookupError):  # noqa: N818 (the name the shared design gives)
    """An outcome for a lesion the log never scored."""


def key_from_env(env: Mapping[str, str] | None = None) -> bytes | None:
    """The hashing key from ``ISIC_LOG_KEY`` (its UTF-8 bytes), None when unset or empty."""
    value = (os.environ if env is None else env).get(KEY_ENV, "")
    return value.encode() if value else None


def key_id(key: bytes) -> str:
    """A fingerprint of ``key`` (not the key): which key a log's hashes were made with."""
    return hmac.new(key, b"isicstack-predlog-key-id", hashlib.sha256).hexdigest()[:16]


def patient_hash(key: bytes, patient_id: str) -> str:
    """The pseudonym of ``patient_id`` under ``key`` (HMAC-SHA256, hex)."""
    return hmac.new(key, str(patient_id).encode(), hashlib.sha256).hexdigest()


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the log's pragmas."""
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=True)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA secure_delete=ON")
    con.execute("PRAGMA busy_timeout=30000")
    return con


@contextlib.contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _finite(x: Any) -> Any:
    """JSON-safe scalar: NaN/inf -> None, numpy scalars -> Python."""
    if type(x) is float:  # the usual cases first: this runs per field of every row
        return x if math.isfinite(x) else None
    if type(x) in (str, int, bool) or x is None:
        return x
    if not isinstance(x, (str, bytes)) and hasattr(x, "item"):
        x = x.item()
    return None if isinstance(x, float) and not math.isfinite(x) else x


class PredictionLog:
    """The log at ``path`` for a writer (the server) and its maintenance commands."""

    def __init__(self, path: str | os.PathLike[str], key: bytes | None,
                 retention_days: float = 365, store_pixels: bool = False,
                 allow_unkeyed: bool = False) -> None:
        self.path = Path(path)
        self.retention_days = float(retention_days)
        self.store_pixels = store_pixels
        self._local = threading.local()
        check_writable(self.path)
        new = not self.path.exists()
        if new:
            _create_private(self.path)
        ensure_private(self.path)
        self.key = key if key else self._unkeyed(allow_unkeyed)
        con = self._con()
        con.executescript(SCHEMA)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        kid = key_id(self.key)
        if meta.get("key_id", kid) != kid:
            raise LogLocationError(f"prediction log {self.path} was written with another key "
                                   f"(key id {meta['key_id']}, this one {kid}): set "
                                   f"{KEY_ENV} to the key it was created with")
        with _transaction(con):
            for k, v in (("format", str(FORMAT)), ("key_id", kid), ("created", str(time.time()))):
                con.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (k, v))

    def _unkeyed(self, allow: bool) -> bytes:
        """The per-log development key in ``<log>.key`` (created once, 0600)."""
        if not allow:
            raise LogLocationError(f"prediction log {self.path}: no hashing key; set {KEY_ENV} "
                                   "(a secret string) or allow an unkeyed development log")
        key_file = Path(f"{self.path}.key")
        if not key_file.exists():
            _create_private(key_file, secrets.token_hex(32).encode())
            log.warning("prediction log %s: %s is not set; patient ids are hashed with a "
                        "per-log random key in %s (development only)", self.path, KEY_ENV,
                        key_file)
        ensure_private(key_file)
        return key_file.read_bytes().strip()

    def _con(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = _connect(self.path)
        return con

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def _row(self, i: int, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """One prediction dict as the table's values (patient_id hashed, inputs as JSON)."""
        missing = [k for k in REQUIRED if row.get(k) is None]
        if missing:
            raise LogWriteError(f"prediction log {self.path}: row {i} lacks {missing}")
        stats = {**{k.removeprefix("crop_"): v for k, v in row.items() if k in CROP_STATS},
                 **dict(row.get("crop_stats") or {})}
        inputs = {k: _finite(v) for k, v in dict(row.get("inputs") or {}).items()
                  if k != "patient_id"}
        crop = row.get("crop") if self.store_pixels else None
        values = {
            "ts": float(row.get("ts") or time.time()), "request_id": str(row["request_id"]),
            "lesion_id": str(row["lesion_id"]),
            "patient_hash": patient_hash(self.key, row["patient_id"]),
            "model_version": str(row["model_version"]), "scorer": str(row["scorer"]),
            "model": str(row["model"]), "inputs": json.dumps(inputs, sort_keys=True),
            "crop_sha256": row.get("crop_sha256"), "crop_bytes": row.get("crop_bytes"),
            **{c: _finite(stats.get(c.removeprefix("crop_"))) for c in CROP_STATS},
            "crop": crop, "score": float(row["score"]), "risk": _finite(row.get("risk")),
            "flag": int(bool(row["flag"])), "latency_ms": _finite(row.get("latency_ms"))}
        return tuple(values[c] for c in COLUMNS)

    def record(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` in one committed transaction; :class:`LogWriteError` if not."""
        try:
            values = [self._row(i, r) for i, r in enumerate(rows)]
            with _transaction(self._con()) as con:
                con.executemany(f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES "
                                f"({', '.join('?' * len(COLUMNS))})", values)
        except LogWriteError:
            raise
        except (sqlite3.Error, OSError, TypeError, ValueError) as err:
            raise LogWriteError(f"prediction log {self.path}: {len(rows)} row(s) not written: "
                                f"{type(err).__name__}: {err}") from err

    def add_outcome(self, lesion_id: str, label: int, reason: str, ts: float | None = None,
                    request_id: str | None = None) -> int:
        """Record the outcome of a scored lesion (biopsy result, or a random ``audit``)."""
        if label not in (0, 1, True, False):
            raise ValueError(f"outcome of lesion {lesion_id!r}: label must be 0 or 1, got "
                             f"{label!r}")
        if reason not in REASONS:
            raise ValueError(f"outcome of lesion {lesion_id!r}: reason must be one of "
                             f"{REASONS}, got {reason!r}")
        try:
            with _transaction(self._con()) as con:
                if con.execute("SELECT 1 FROM predictions WHERE lesion_id = ? LIMIT 1",
                               (str(lesion_id),)).fetchone() is None:
                    raise UnknownLesion(f"lesion {lesion_id!r} was never scored "
                                        f"(prediction log {self.path})")
                cur = con.execute("INSERT INTO outcomes (ts, lesion_id, label, reason, "
                                  "request_id) VALUES (?, ?, ?, ?, ?)",
                                  (float(ts or time.time()), str(lesion_id), int(label),
                                   reason, request_id))
                return int(cur.lastrowid or 0)
        except sqlite3.Error as err:
            raise LogWriteError(f"prediction log {self.path}: outcome of {lesion_id!r} not "
                                f"written: {err}") from err

    def _delete(self, where: str, args: tuple[Any, ...]) -> int:
        """Delete predictions matching ``where`` and the outcomes of lesions left unscored."""
        try:
            with _transaction(self._con()) as con:
                n = con.execute(f"DELETE FROM predictions WHERE {where}", args).rowcount
                con.execute("DELETE FROM outcomes WHERE lesion_id NOT IN "
                            "(SELECT lesion_id FROM predictions)")
            self._con().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return int(n)
        except sqlite3.Error as err:
            raise LogWriteError(f"prediction log {self.path}: delete failed: {err}") from err

    def forget_patient(self, patient_id: str) -> int:
        """Delete every prediction of ``patient_id`` (and those lesions' outcomes); their count."""
        return self._delete("patient_hash = ?", (patient_hash(self.key, patient_id),))

    def prune(self, now: float | None = None) -> int:
        """Delete predictions older than the retention period (and their outcomes); the count."""
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400.0
        return self._delete("ts < ?", (cutoff,))


DTYPES: dict[str, Any] = {
    "id": pl.Int64, "ts": pl.Float64, "request_id": pl.String, "lesion_id": pl.String,
    "patient_hash": pl.String, "model_version": pl.String, "scorer": pl.String,
    "model": pl.String, "inputs": pl.String, "crop_sha256": pl.String, "crop_bytes": pl.Int64,
    **dict.fromkeys(CROP_STATS, pl.Float64), "score": pl.Float64, "risk": pl.Float64,
    "flag": pl.Int64, "latency_ms": pl.Float64, "label": pl.Int64, "reason": pl.String}


def _read(path: str | os.PathLike[str], query: str) -> pl.DataFrame:
    """A read-only query of an existing log (never creates one)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prediction log {p} not found")
    con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        cur = con.execute(query)
        names = [d[0] for d in cur.description]
        return pl.DataFrame(cur.fetchall(), schema={n: DTYPES[n] for n in names}, orient="row")
    except sqlite3.DatabaseError as err:
        raise ValueError(f"prediction log {p}: not a readable prediction log ({err})") from err
    finally:
        con.close()


def read_predictions(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Every prediction row (no pixels), in time order; ``inputs`` still JSON text."""
    cols = [c for c in COLUMNS if c != "crop"]
    return _read(path, f"SELECT id, {', '.join(cols)} FROM predictions ORDER BY ts, id")


def read_outcomes(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Every outcome row, in time order."""
    return _read(path, "SELECT id, ts, lesion_id, label, reason, request_id FROM outcomes "
                       "ORDER BY ts, id")
