"""``isic space``: the folder alone runs the page as a Hugging Face Space.

The slow test starts ``app.py`` from a copy of the folder with a fresh venv whose own
site-packages holds only the Space's wheel (the pinned distributions are read from this venv's
site-packages, which the test first checks against every pin of ``requirements.txt``: a full
``pip install -r`` would copy ~5 GB of torch per run), on loopback, and scores a crop through
the page's named endpoint ``/score_crop``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
from api_fixtures import make_bundle
from PIL import Image

from isicstack.data.crops import CropStore
from isicstack.serving.config import SpaceConfig
from isicstack.serving.space import closure, run


@pytest.fixture(scope="module")
def space(clinic_calibrated: Path, mini_isic: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Path:
    tmp = tmp_path_factory.mktemp("space")
    bundle = make_bundle(clinic_calibrated, mini_isic, tmp / "bundle")
    return run(SpaceConfig(bundle=str(bundle), out_dir=str(tmp / "space"), cpu_threads=1))


def test_space_folder(space: Path):
    card = (space / "README.md").read_text(encoding="utf-8")
    assert 'sdk: "gradio"' in card and 'app_file: "app.py"' in card
    assert 'license: "apache-2.0"' in card  # trained on the synthetic set, not ISIC data
    assert "Research use, not a medical device" in card
    reqs = (space / "requirements.txt").read_text(encoding="utf-8").splitlines()
    wheel = next(space.glob("wheels/isicstack-*.whl")).name
    assert reqs[1] == f"./wheels/{wheel}[app,explain]"
    pins = dict(line.split("==") for line in reqs[2:])
    assert {"torch", "gradio", "lightgbm", "grad-cam"} <= set(pins)
    assert not [p for p in pins if p.startswith("nvidia-")]  # a CPU Space: no CUDA wheels
    assert {metadata.version(n) for n in ("torch",)} == {pins["torch"]}
    assert closure("isicstack", ()) < closure("isicstack", ("app", "explain"))
    with pytest.raises(FileExistsError, match="not a space"):
        run(SpaceConfig(bundle=str(space / "bundle"), out_dir=str(space / "bundle")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_space_runs_from_its_folder(space: Path, mini_isic: Path, tmp_path: Path):
    client_mod = pytest.importorskip("gradio_client")
    reqs = (space / "requirements.txt").read_text(encoding="utf-8").splitlines()[2:]
    wrong = [r for r in reqs if metadata.version(r.split("==")[0]) != r.split("==")[1]]
    assert not wrong, f"pins differ from the installed set the fresh venv reads: {wrong}"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    Path(site.stdout.strip(), "pinned.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(space.glob("wheels/isicstack-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    folder = shutil.copytree(space, tmp_path / "space")  # the folder alone, not the repo
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(python), "-c", "import isicstack; print(isicstack.__file__)"],
                           cwd=folder, env=env, check=True, capture_output=True, text=True)
    assert where.stdout.startswith(str(venv)), where.stdout  # the Space's wheel, not the repo
    port = _free_port()
    env.update(GRADIO_SERVER_PORT=str(port), HF_HUB_OFFLINE="1", ISIC_TRACKING="none")
    proc = subprocess.Popen([str(python), "app.py"], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("the Space's page did not answer within 180 s")
        with CropStore(mini_isic / "test-image.hdf5") as store:
            crop = tmp_path / "crop.png"
            Image.fromarray(store.read(store.keys()[0])).save(crop)
        client = client_mod.Client(url, verbose=False)
        text, _ = client.predict(client_mod.handle_file(str(crop)), *([None] * 10),
                                 api_name="/score_crop")
        assert "Research use, not a medical device" in text
        assert "Probability" in text or "Calibrated risk" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
