"""The prediction log: private file mode, keyed pseudonyms, committed writes or LogWriteError,
outcomes, retention, forgetting a patient, and a clear error for an unwritable location."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from isicstack.pipelines.cli import main
from isicstack.serving import log_file, predlog
from isicstack.serving.log_file import check_writable
from isicstack.serving.predlog import (
    LogLocationError,
    LogWriteError,
    PredictionLog,
    UnknownLesion,
    read_outcomes,
    read_predictions,
)

KEY = b"k" * 32


def row(lesion: str, patient: str = "IP_1", ts: float | None = None, **extra) -> dict:
    return {"request_id": "r1", "lesion_id": lesion, "patient_id": patient, "ts": ts,
            "model_version": "v1", "scorer": "full", "model": "stack", "score": 0.4,
            "risk": 0.02, "flag": True, "latency_ms": 12.0,
            "inputs": {"age_approx": 55.0, "sex": "male", "patient_id": patient},
            "crop_sha256": "ab" * 32, "crop_bytes": 1234,
            "crop_stats": {"width": 120, "height": 118, "brightness": 140.0, "mean_r": 170.0,
                           "mean_g": 130.0, "mean_b": 110.0}, **extra}


def test_log_is_private_keyed_and_durable(tmp_path: Path):
    path = tmp_path / "serve" / "log.db"
    plog = PredictionLog(path, KEY)
    plog.record([row("L1"), row("L2", "IP_2")])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in path.parent.iterdir())
    con = plog._con()
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    got = read_predictions(path)
    assert got["lesion_id"].to_list() == ["L1", "L2"] and got["crop_width"][0] == 120
    assert got["patient_hash"][0] == predlog.patient_hash(KEY, "IP_1")
    assert b"IP_1" not in path.read_bytes() + Path(f"{path}-wal").read_bytes()
    os.chmod(path, 0o644)  # a looser mode found at open is repaired
    PredictionLog(path, KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(LogLocationError, match="another key"):
        PredictionLog(path, b"other")


def test_without_a_key_refused_unless_a_development_log(tmp_path: Path):
    with pytest.raises(LogLocationError, match="ISIC_LOG_KEY"):
        PredictionLog(tmp_path / "a.db", None)
    PredictionLog(tmp_path / "b.db", None, allow_unkeyed=True).record([row("L1")])
    assert stat.S_IMODE((tmp_path / "b.db.key").stat().st_mode) == 0o600
    assert predlog.key_from_env({"ISIC_LOG_KEY": "s3cret"}) == b"s3cret"


def test_record_raises_log_write_error_and_commits_nothing(tmp_path: Path, monkeypatch):
    plog = PredictionLog(tmp_path / "log.db", KEY)
    with pytest.raises(LogWriteError, match=r"row 1 lacks \['lesion_id'\]"):
        plog.record([row("L1"), row(None)])

    class Failing:  # a connection whose disk fails mid-write
        def __init__(self, con: sqlite3.Connection) -> None:
            self.con = con

        def execute(self, sql: str, *a):
            return self.con.execute(sql, *a)

        def executemany(self, *a):
            raise sqlite3.OperationalError("disk I/O error")

    real = plog._con()
    monkeypatch.setattr(plog, "_con", lambda: Failing(real))
    with pytest.raises(LogWriteError, match="disk I/O error"):
        plog.record([row("L3")])
    assert read_predictions(tmp_path / "log.db").is_empty()


def test_threads_write_through_their_own_connections(tmp_path: Path):
    plog = PredictionLog(tmp_path / "log.db", KEY)
    threads = [threading.Thread(target=lambda t=t: [plog.record([row(f"L{t}_{i}")])
                                                    for i in range(10)]) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_predictions(tmp_path / "log.db").height == 40


def test_outcomes_forget_and_prune(tmp_path: Path, monkeypatch, capsys):
    path = tmp_path / "log.db"
    plog = PredictionLog(path, KEY, retention_days=30)
    plog.record([row("L1", ts=1e9), row("L2", ts=2e9), row("L3", "IP_2", ts=2e9)])
    assert plog.add_outcome("L1", 1, "biopsy") >= 1
    plog.add_outcome("L3", 0, "audit")
    with pytest.raises(UnknownLesion, match="'L9' was never scored"):
        plog.add_outcome("L9", 1, "biopsy")
    with pytest.raises(ValueError, match="reason must be one of"):
        plog.add_outcome("L1", 1, "guess")
    assert plog.prune(now=2e9) == 1  # L1 is older than 30 days, and its outcome goes with it
    assert read_outcomes(path)["lesion_id"].to_list() == ["L3"]
    assert plog.forget_patient("IP_2") == 1
    assert read_predictions(path)["lesion_id"].to_list() == ["L2"]
    assert read_outcomes(path).is_empty()
    monkeypatch.setenv("ISIC_LOG_KEY", KEY.decode())
    assert main(["forget-patient", "patient_id=IP_1", f"log={path}"]) == 0
    assert main(["prune-log", f"log={path}", "retention_days=1"]) == 0
    assert capsys.readouterr().out.split() == ["1", "0"]
    assert main(["forget-patient", "patient_id=IP_1", f"log={tmp_path / 'no.db'}"]) == 1


def test_check_writable_names_a_read_only_folder_and_a_full_disk(tmp_path: Path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    if os.geteuid() == 0:  # root writes anyway: the folder's file system refuses instead
        def refuse(path, data=b""):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        monkeypatch.setattr(log_file, "_create_private", refuse)
    with pytest.raises(LogLocationError, match=r"ro/log.db: cannot write in .*read-only|not wri"):
        check_writable(ro / "log.db")
    monkeypatch.undo()
    monkeypatch.setattr(log_file.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(LogLocationError, match="the disk holding .* is full"):
        PredictionLog(tmp_path / "log.db", KEY)
