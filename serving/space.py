"""``isic space``: a folder that runs the web page over a bundle as a Hugging Face Space.

The folder alone is the Space: ``app.py`` (the page over ``bundle/``, on the host and port the
Space gives it), ``requirements.txt`` (the project's wheel with its ``app`` and ``explain``
extras, and every distribution they need pinned at ``requirements.lock``'s version; torch
from PyTorch's CPU index, as a free Space has no GPU), ``wheels/`` (that wheel), ``bundle/``
(checked against its SHA-256s) and ``README.md`` whose front matter Hugging Face reads
(``sdk: gradio`` at the installed version, ``license: cc-by-nc-4.0`` when the model was trained
on ISIC data, whose licence it is).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from isicstack.data.io import write_text
from isicstack.extras import EXTRA_MARKER, canonical
from isicstack.inference.package import REPO, build_wheel, building_dir, swap_in
from isicstack.serving.config import SpaceConfig
from isicstack.serving.manifest import BUNDLE_FILE, RESEARCH_USE
from isicstack.serving.registry import resolve

log = logging.getLogger(__name__)
EXTRAS = ("app", "explain")  # the page and its Grad-CAM overlay
MARKER = "space.json"  # what `isic space` wrote: a folder without it is never replaced
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
GPU_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)")  # torch's CUDA wheels: not on a CPU Space
_REQ = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")

APP = '''"""The isicstack page as a Hugging Face Space (written by `isic space`): the model bundle
beside this file, on the host and port the Space sets ({notice})."""

import os
from pathlib import Path

from isicstack.app.config import AppConfig
from isicstack.app.page import run

run(AppConfig(bundle=str(Path(__file__).resolve().parent / "bundle"),
              host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
              port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), cpu_threads={threads}))
'''


def closure(name: str, extras: tuple[str, ...]) -> set[str]:
    """Every distribution ``name[extras]`` needs, by the installed metadata (environment
    markers other than ``extra`` are kept: a superset, cut to the lock's names later)."""
    seen: set[str] = set()
    todo = [(name, set(extras))]
    while todo:
        dist, wanted = todo.pop()
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            m, extra = _REQ.match(line), EXTRA_MARKER.search(line)
            if m is None or (extra and extra.group(1) not in wanted):
                continue
            key = canonical(m.group(1))
            sub = {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}
            if key not in seen or sub:
                seen.add(key)
                todo.append((key, sub))
    return seen - {canonical(name)}


def pinned(lock: Path, names: set[str]) -> list[str]:
    """``name==version`` of ``lock`` for each of ``names`` (CUDA-only wheels left out)."""
    out = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        if "==" not in line or line.lstrip().startswith("#"):
            continue
        key = canonical(line.split("==")[0].strip())
        if key in names and not GPU_ONLY.match(key):
            out.append(line.strip())
    return out


def requirements(wheel: str, lock: Path) -> str:
    """The Space's requirements.txt: the wheel with its extras, every need pinned."""
    pins = pinned(lock, closure("isicstack", EXTRAS))
    return "\n".join([f"--extra-index-url {CPU_INDEX}", f"./wheels/{wheel}[{','.join(EXTRAS)}]",
                      *pins]) + "\n"


def licence(cfg: SpaceConfig, manifest: dict[str, Any]) -> str:
    """The model's licence: ISIC data's (CC BY-NC 4.0) unless it was trained on the
    synthetic set (then the code's, Apache 2.0) or ``cfg.license`` says otherwise."""
    if cfg.license != "auto":
        return cfg.license
    synthetic = (manifest.get("training_data") or {}).get("synthetic")
    return "apache-2.0" if synthetic else "cc-by-nc-4.0"


def readme(cfg: SpaceConfig, manifest: dict[str, Any], lic: str) -> str:
    """The Space card: front matter Hugging Face reads, then what the page is and is not."""
    front = {"title": cfg.title, "emoji": "🔬", "colorFrom": "gray", "colorTo": "indigo",
             "sdk": "gradio", "sdk_version": metadata.version("gradio"),
             "python_version": "3.11", "app_file": "app.py", "pinned": False, "license": lic,
             "short_description": "ISIC 2024 lesion risk; research use only"}
    lines = ["---", *(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in front.items()),
             "---", "", f"# {cfg.title}", "",
             f"**{RESEARCH_USE[0].upper()}{RESEARCH_USE[1:]}.** Upload a lesion crop (and any "
             "metadata) to see the model's calibrated risk, its review flag at the operating "
             "point picked on out-of-fold scores, and a Grad-CAM overlay.", "",
             f"Model bundle `{manifest['version']}` (isicstack); trained on "
             f"{'synthetic data' if lic == 'apache-2.0' else 'ISIC data (CC BY-NC 4.0)'}."]
    return "\n".join(lines) + "\n"


def run(cfg: SpaceConfig) -> Path:
    """Build ``out_dir`` and return it."""
    folder = resolve(cfg.bundle, cfg.artifacts)  # checked against its SHA-256s
    manifest = json.loads((folder / BUNDLE_FILE).read_text(encoding="utf-8"))
    out = Path(cfg.out_dir)
    tmp = building_dir(out)
    shutil.copytree(folder, tmp / "bundle")
    wheel = build_wheel(tmp / "wheels").name
    write_text(requirements(wheel, REPO / "requirements.lock"), tmp / "requirements.txt")
    write_text(APP.format(notice=RESEARCH_USE, threads=cfg.cpu_threads), tmp / "app.py")
    lic = licence(cfg, manifest)
    write_text(readme(cfg, manifest, lic), tmp / "README.md")
    write_text(json.dumps({"bundle": manifest["version"], "wheel": wheel, "license": lic},
                          indent=1), tmp / MARKER)
    swap_in(tmp, out, MARKER, "space")
    log.info("space: %s (bundle %s, licence %s): upload the folder as a Gradio Space", out,
             manifest["version"], lic)
    return out
