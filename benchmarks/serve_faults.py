"""The fault runs of ``bench_serve.py``: SIGKILL mid-load and restart, and a log location that
is read-only or full at start (tiny tmpfs mounts, made and removed here; root only)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import serve_load as sl

KILL_AFTER = 16  # requests answered before the kill (the rest are in flight or queued)


def sigkill(bundle: Path, art: Path, data: Path, env: dict[str, str], core: int
            ) -> dict[str, Any]:
    """8 one-lesion clients; the server SIGKILLed once KILL_AFTER requests are answered, with
    the others in flight; then restarted on the same log."""
    log = art / "sigkill" / "predictions.sqlite"
    shutil.rmtree(log.parent, ignore_errors=True)
    log.parent.mkdir(parents=True)
    out = art / "sigkill" / "server.log"
    server = sl.Server(bundle, log, out, core, env)
    server.ready()
    pool = sl.bodies(data, 1)
    got: list[dict] = []

    t = threading.Thread(target=sl.load, args=(server.url, pool, 8, 100_000, 300, got))
    t.start()
    t0 = time.perf_counter()
    while sum(g["status"] == 200 for g in got) < KILL_AFTER and time.perf_counter() - t0 < 240:
        time.sleep(0.05)
    server.kill()
    t.join()
    again = sl.Server(bundle, log, out, core, env)
    try:
        restart_s = again.ready()
        rows = sl.logged(log)
        check = sl.once_each(got, rows)
        after, _ = sl.load(again.url, pool, 1, 3, 30)
    finally:
        again.stop()
    sizes = {g["request_id"]: g["lesions"] for g in got if g["status"] == 200}
    return {"acknowledged": check["answered"], "missing": check["missing"],
            "partial": sum(n != 1 for n in rows.values()) + check["wrong_count"],
            "logged_requests": len(rows),
            "logged_not_acknowledged": sum(r not in sizes for r in rows),
            "failed_at_kill": sum(g["status"] != 200 for g in got),
            "integrity_check": sl.integrity(log), "restart_ready_s": restart_s,
            "answers_after_restart": sum(g["status"] == 200 for g in after) == len(after)}


@contextmanager
def tmpfs(options: str) -> Iterator[Path]:
    """A tmpfs mounted with ``options`` on a fresh folder, unmounted and removed after."""
    where = Path(tempfile.mkdtemp(prefix="isic-serve-"))
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                       check=True, capture_output=True, text=True)
        try:
            yield where
        finally:
            subprocess.run(["umount", str(where)], check=False)
    finally:
        where.rmdir()


def _start_fails(bundle: Path, log: Path, art: Path, env: dict[str, str], core: int
                 ) -> dict[str, Any]:
    """``isic serve`` on ``log``: its exit status and whether its message names the path."""
    port = sl.free_port()
    cmd = sl.pinned(core, [*sl.CLI, "serve", "--profile", "smoke", f"bundle={bundle}",
                           f"port={port}", f"log={log}", "cpu_threads=1"])
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return {"exit": None, "names_path": False, "message": "still serving after 180 s"}
    text = (done.stdout + done.stderr).strip()
    (art / f"start_{log.parent.name}.log").write_text(text)
    lines = [ln for ln in text.splitlines() if str(log.parent) in ln]
    return {"exit": done.returncode, "names_path": bool(lines),
            "message": _scrub((lines[-1] if lines else text.splitlines()[-1] if text else "")
                              .replace(str(log.parent.parent), "<mount>"))}


def _scrub(line: str) -> str:
    """The message without this machine's folders (results files hold no absolute path)."""
    return re.sub(r"(?<![\w.<>])/(?:[\w.+-]+/)+", "<dir>/", line)[:300]


def _mounted(options: str, fill: Callable[[Path], None] | None, bundle: Path, art: Path,
             env: dict[str, str], core: int) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"skipped": "needs root to mount a tmpfs (as a user, a read-only folder or a "
                           "full disk cannot be made without touching the real disk)"}
    try:
        with tmpfs(options) as where:
            if fill is not None:
                fill(where)
            return _start_fails(bundle, where / "serve" / "predictions.sqlite", art, env, core)
    except subprocess.CalledProcessError as err:
        return {"skipped": f"mount -t tmpfs failed: {err.stderr.strip()[:200]}"}


def read_only(bundle: Path, art: Path, env: dict[str, str], core: int) -> dict[str, Any]:
    """The log's folder on a read-only mount (root bypasses file modes; a mount does not)."""
    def make_ro(where: Path) -> None:
        (where / "serve").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True,
                       capture_output=True, text=True)
    return _mounted("size=1m,mode=0755", make_ro, bundle, art, env, core)


def full_disk(bundle: Path, art: Path, env: dict[str, str], core: int) -> dict[str, Any]:
    """The log's folder on a 256 KiB tmpfs filled to the last byte."""
    def fill(where: Path) -> None:
        (where / "serve").mkdir()
        with (where / "filler").open("wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
    return _mounted("size=256k,mode=0755", fill, bundle, art, env, core)
