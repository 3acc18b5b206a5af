"""Headless Chromium for the browser tests (the app's page, the MLflow UI): one definition of
the flags, the skip reason and the WebDriver, so a new browser test only writes its checks.

Debian's ``chromium`` + ``chromium-driver`` (``.ci/run`` installs them); without them, or
without the Python packages a test names, the test skips and says why.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
# the background-networking flags: this machine's closed network refuses Chromium's own calls
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def missing(*modules: str) -> str:
    """Why a browser test cannot run here ("" when it can): no browser, or a module absent."""
    if not CHROMIUM or not DRIVER:
        return "no headless browser: apt-get install chromium chromium-driver"
    for module in ("selenium", *modules):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return ""


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chrome(window: str = "1280,1000") -> Iterator[Any]:
    """A headless Chrome WebDriver with an empty profile of its own, quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*FLAGS, f"--window-size={window}", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
