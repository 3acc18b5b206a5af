"""The run ledger in a real browser: ``mlflow ui`` (as ``make mlflow-ui`` starts it) over the
default store of a smoke run lists the run, and its page shows its OOF pAUC.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
the ``mlflow`` extra; skips, saying so, where they are missing. Never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser_fixtures import chrome, free_port, missing

from isicstack.ledger import store as tracking
from isicstack.ledger.result import read_result
from isicstack.tabular.config import ModelSpec, TabularConfig
from isicstack.tabular.cv import run as train_tabular

pytestmark = pytest.mark.slow
WAIT = 120  # seconds: the server's first start migrates nothing but imports a lot on a busy box


@pytest.fixture(scope="module")
def ledger(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tracked smoke LightGBM run, the MLflow UI over its store: url, experiment id, run,
    artifacts folder."""
    reason = missing("mlflow")
    if reason:
        pytest.skip(reason)
    art = tmp_path_factory.mktemp("ledger") / "artifacts"
    art.mkdir()
    for name in ("folds.parquet", "folds.json"):
        shutil.copy2(mini_artifacts / name, art / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.ENV, "auto")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        train_tabular(TabularConfig(data_dir=str(mini_isic), artifacts=str(art), bags=1,
                                    models={"lgbm": ModelSpec("lgbm", num_rounds=20)},
                                    neg_ratio=10.0, threads=1))
    from mlflow.tracking import MlflowClient

    uri = tracking.store_uri(art)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    run = client.search_runs([exp.experiment_id])[0]
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(art / "ui.log", "wb")  # noqa: SIM115 (closed at teardown)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "ui", "--host", "127.0.0.1", "--port",
         str(port), "--workers", "1", "--backend-store-uri", uri,
         "--default-artifact-root", str(art / "mlartifacts")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, server, art / "ui.log")
        yield url, exp.experiment_id, run, art
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _wait_for(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow ui exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"mlflow ui did not answer in {WAIT}s: {log.read_text()[-2000:]}")


@pytest.fixture()
def browser():
    yield from chrome("1400,1000")


def _metric_shown(text: str, key: str) -> float | None:
    """The value on the line after ``key`` in the run page's metrics table."""
    lines = [ln.strip() for ln in text.splitlines()]
    for i, line in enumerate(lines[:-1]):
        if line == key:
            try:
                return float(lines[i + 1])
            except ValueError:
                continue
    return None


def test_ui_lists_the_smoke_run_with_its_oof_pauc(ledger, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, exp_id, run, art = ledger
    result = read_result(art / "runs" / "lgbm")
    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{url}/#/experiments/{exp_id}/runs?workflowType=machine_learning")
    wait.until(ec.element_to_be_clickable((By.LINK_TEXT, "lgbm"))).click()
    wait.until(lambda d: _metric_shown(d.find_element(By.TAG_NAME, "body").text, "oof_pauc")
               is not None)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert _metric_shown(text, "oof_pauc") == pytest.approx(result.pauc, abs=1e-9)
    assert run.data.tags["isic.fold_hash"] in text  # the tags section: which folds
