"""``isic kaggle-package``: a folder to upload as one Kaggle dataset for the offline notebook.

``dist/kaggle/`` holds the project as a wheel, exactly the run files the predict path reads
(found by loading every model the resolved predict config needs, so a package that builds also
loads), checkpoints stripped to their weights (no optimizer state: half the upload), the resolved
``predict.yaml``, ``run_inference.py`` and the ``dataset-metadata.json`` of ``kaggle datasets``.
It is built beside the target and swapped in, so a failed build leaves the old package intact.

The run files, maps and ``predict.yaml`` are collected by one function, :func:`pack_models`,
which ``isic bundle`` (``serving/bundle.py``, the deployable model) calls too: one packager.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from isicstack.calibration.maps import calibration_dir, map_path, read_map
from isicstack.data.io import atomic_path, write_json, write_text
from isicstack.data.layout import run_dir
from isicstack.data.provenance import file_sha256
from isicstack.inference.config import PackageConfig, PredictConfig
from isicstack.inference.predict import STACKER_FILE, resolve_models
from isicstack.settings.layers import load_config, to_dict

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]  # the project root (the `isicstack` package)
MANIFEST = "MANIFEST.json"


def build_wheel(dest: Path) -> Path:
    """``pip wheel . --no-deps`` of the project into ``dest`` (offline: no build isolation)."""
    # an isolated build would download setuptools: build with the installed one when present
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    # setuptools' build/ cache keeps deleted modules, which would ship in the wheel
    shutil.rmtree(REPO / "build", ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                           "--quiet", *isolation, "-w", str(dest)],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pip wheel failed ({done.returncode}): {done.stderr[-2000:]}")
    wheels = sorted(dest.glob("isicstack-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip wheel wrote no isicstack wheel into {dest}")
    return wheels[-1]


def copy_run_file(src: Path, dst: Path) -> None:
    """Copy a run file; a Lightning checkpoint keeps only its ``state_dict`` (the same bytes
    for the same weights, whenever copied)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix != ".ckpt":
        shutil.copy2(src, dst)
        return

    state = torch.load(src, map_location="cpu", weights_only=True)["state_dict"]
    # saved through a buffer: a file's zip archive is named after the file (here a random
    # temporary name), so the same weights would differ byte for byte and in the bundle's hash
    buf = io.BytesIO()
    torch.save({"state_dict": state}, buf)
    with atomic_path(dst) as tmp:
        tmp.write_bytes(buf.getvalue())


def package_files(pcfg: PredictConfig, what: str = "kaggle-package"
                  ) -> tuple[dict[str, Any], list[Path]]:
    """What the predict path reads from ``artifacts`` (loaded on CPU to prove it loads)."""
    cpu = dataclasses.replace(pcfg, accelerator="cpu", num_workers=0)
    stacker, final, predictors = resolve_models(cpu, Path("unused-test-images.hdf5"))
    files = [f for p in predictors for f in p.files]
    if stacker is not None:
        files.append(run_dir(pcfg.artifacts, pcfg.stacker) / STACKER_FILE)
    maps = calibration_files(pcfg, [p.name for p in predictors] + (
        ["stack"] if stacker is not None else []), "stack" if stacker else final[0], what)
    info = {"models": [p.name for p in predictors], "submitted": final,
            "stacker": stacker.method if stacker else None, "calibrated": sorted(maps)}
    return info, [*files, *maps.values()]


def calibration_files(pcfg: PredictConfig, names: list[str], submitted: str,
                      what: str = "kaggle-package") -> dict[str, Path]:
    """The current calibration map of each model that has one (``isic calibrate``)."""
    if pcfg.calibration == "off":
        return {}
    folder = calibration_dir(pcfg.artifacts)
    out = {}
    for name in names:
        cal, why = read_map(pcfg.artifacts, name)
        if cal is not None:
            out[name] = map_path(folder, name)
        elif pcfg.calibration == "required" and name == submitted:
            raise FileNotFoundError(f"{what}: calibration required, but {why}")
        else:
            log.info("%s: %s ships without a calibrated risk: %s", what, name, why)
    return out


def file_manifest(root: Path, paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` of ``paths`` under ``root`` (POSIX, sorted)."""
    return {p.relative_to(root).as_posix(): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in sorted(paths)}


def pack_models(pcfg: PredictConfig, dest: Path, extra: Sequence[str] = (),
                what: str = "kaggle-package") -> dict[str, Any]:
    """The one packager of ``isic kaggle-package`` and ``isic bundle``: copy into ``dest`` the
    run files the predict path reads (``dest/artifacts/``, the layout of ``artifacts``) with
    their calibration maps, and the resolved ``predict.yaml`` (paths relative to ``dest``).

    ``extra``: more runs shipped beside the ones ``pcfg`` scores (the bundle's solo model);
    ``predict.yaml`` stays ``pcfg``'s. Returns the models info (``models``, ``submitted``,
    ``stacker``, ``calibrated``) and ``files``: sha256 and bytes of every file written."""
    info, files = package_files(dataclasses.replace(pcfg, models=[*pcfg.models, *extra]), what)
    art = Path(pcfg.artifacts)
    written = []
    for src in dict.fromkeys(files):
        written.append(dest / "artifacts" / src.relative_to(art))
        copy_run_file(src, written[-1])
    shipped = dataclasses.replace(pcfg, data_dir="auto", artifacts="artifacts", out="",
                                  preds_dir="")
    written.append(write_text(yaml.safe_dump({"base": to_dict(shipped)}, sort_keys=False),
                              dest / "predict.yaml"))
    return {**info, "files": file_manifest(dest, written)}


def building_dir(out: Path) -> Path:
    """The empty folder a package is built in, beside ``out`` (then :func:`swap_in`)."""
    tmp = out.with_name(f".{out.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def swap_in(tmp: Path, out: Path, marker: str = MANIFEST, what: str = "kaggle package") -> None:
    """Replace ``out`` by ``tmp``; refuse to delete a folder this stage did not build (one
    without ``marker``)."""
    if out.exists():
        if any(out.iterdir()) and not (out / marker).is_file():
            raise FileExistsError(f"{out}: exists and is not a {what} (no {marker}); "
                                  "choose another out_dir or remove it")
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)  # the old one stays whole until the new one is in place
        tmp.rename(out)
        shutil.rmtree(old)
        return
    tmp.rename(out)


def run(cfg: PackageConfig) -> Path:
    """Build ``out_dir`` and return it."""
    pcfg = load_config(PredictConfig, "predict", cfg.predict_profile or cfg.profile,
                       [*cfg.predict_overrides, f"artifacts={cfg.artifacts}"])
    out = Path(cfg.out_dir)
    tmp = building_dir(out)
    packed = pack_models(pcfg, tmp)
    info = {k: packed[k] for k in ("models", "submitted", "stacker", "calibrated")}
    shutil.copy2(REPO / "inference" / "kaggle_inference.py", tmp / "run_inference.py")
    wheel = build_wheel(tmp / "wheels").name if cfg.wheel else None
    write_json({"title": cfg.dataset_title, "id": cfg.dataset_id,
                "licenses": [{"name": "CC0-1.0"}]}, tmp / "dataset-metadata.json")
    sizes = {str(p.relative_to(tmp)): p.stat().st_size
             for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {**info, "wheel": wheel, "files": sizes, "bytes": sum(sizes.values())}
    write_json(manifest, tmp / MANIFEST)
    swap_in(tmp, out)
    log.info("kaggle-package: %s (%d files, %.1f MB; models %s); upload steps: KAGGLE.md", out,
             len(sizes) + 1, manifest["bytes"] / 1e6, info["models"])
    return out
