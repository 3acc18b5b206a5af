"""``isic ingest --images DIR --labels CSV --layout isic2019|isic2020|generic --out DIR``.

Writes ``<out>/images.hdf5`` (one scalar JPEG-bytes dataset per id, the Kaggle crop layout),
``<out>/labels.csv`` (``isic_id, target, patient_id`` + known metadata) and ``<out>/ingest.json``
(the summary). Only ids with both a label row and a readable image are written; every other id
is listed in the summary and the log, never dropped silently. Train on the result with
``isic train-image fusion=false images_path=<out>/images.hdf5 labels_path=<out>/labels.csv``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

from isicstack.data.colour import shades_of_gray
from isicstack.data.crops import decode_jpeg, encode_jpeg, write_crops
from isicstack.data.io import DataError, write_csv, write_json
from isicstack.ingest.config import IngestConfig
from isicstack.ingest.layouts import read_labels

log = logging.getLogger(__name__)

IMAGES = "images.hdf5"
LABELS = "labels.csv"
SUMMARY = "ingest.json"
JPEG_SUFFIXES = (".jpg", ".jpeg")


def find_images(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """JPEG files by id (file stem), and the other files found (listed, not read).

    Hidden files (``._ISIC_x.jpg`` from macOS archives) count as other files, not images.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: images folder not found")
    found: dict[str, Path] = {}
    other = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() not in JPEG_SUFFIXES or path.name.startswith("."):
            other.append(str(path.relative_to(folder)))
            continue
        if path.stem in found:
            raise DataError(f"{folder}: two images for id {path.stem!r}: {found[path.stem]} "
                            f"and {path}")
        found[path.stem] = path
    return found, other


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop resized to ``size`` px (the lesion is centred in ISIC photos)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(image[top:top + side, left:left + side])
    if side == size:
        return square
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.LANCZOS))


def preparer(cfg: IngestConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The per-image transform: optional colour constancy, then the square resize."""
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    if cfg.color_constancy:
        steps.append(shades_of_gray)
    if cfg.size > 0:
        steps.append(lambda im: square_resize(im, cfg.size))

    def prepare(image: np.ndarray) -> np.ndarray:
        for step in steps:
            image = step(image)
        return image

    return prepare


def read_image(path: Path) -> np.ndarray:
    """An RGB image from a JPEG file; a DataError naming the file when it is not readable."""
    try:
        image = decode_jpeg(path.read_bytes())
    except Exception as err:
        raise DataError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise DataError(f"{path}: decodes to shape {image.shape}, expected an RGB image")
    return image


def encode_one(job: tuple[str, Path, IngestConfig]) -> tuple[str, bytes | None, str]:
    """``(id, JPEG bytes, "")`` of one prepared image, or ``(id, None, error)`` (picklable)."""
    isic_id, path, cfg = job
    try:
        image = preparer(cfg)(read_image(path))
    except DataError as err:
        return isic_id, None, str(err)
    return isic_id, encode_jpeg(image, cfg.jpeg_quality), ""


def crops(ids: list[str], files: dict[str, Path], cfg: IngestConfig,
          bad: list[dict[str, str]]) -> Iterator[tuple[str, bytes]]:
    """``(id, JPEG bytes)`` of the prepared images in ``ids`` order; unreadable ones raise or
    go to ``bad``. With ``workers > 1`` images are prepared by a process pool."""
    jobs = ((isic_id, files[isic_id], cfg) for isic_id in ids)
    with contextlib.ExitStack() as stack:
        results: Iterator[tuple[str, bytes | None, str]] = map(encode_one, jobs)
        if cfg.workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(cfg.workers))
            results = pool.map(encode_one, jobs, chunksize=16)
        for isic_id, data, error in results:
            if data is None:
                if cfg.on_bad_image == "error":
                    raise DataError(f"{error} (set on_bad_image=list to skip and list such "
                                    "images)")
                log.warning("ingest: skipping %s", error)
                bad.append({"isic_id": isic_id, "file": str(files[isic_id]), "error": error})
                continue
            yield isic_id, data


def check(cfg: IngestConfig) -> tuple[Path, Path, Path]:
    """The three required paths, or a DataError naming what is missing."""
    missing = [k for k in ("images", "labels", "out") if not getattr(cfg, k)]
    if missing:
        raise DataError("isic ingest needs " + ", ".join(f"--{k}" for k in missing))
    if cfg.size < 0 or not 1 <= cfg.jpeg_quality <= 100 or cfg.workers < 1:
        raise DataError(f"size must be >= 0, jpeg_quality in 1..100 and workers >= 1; got "
                        f"{cfg.size}, {cfg.jpeg_quality}, {cfg.workers}")
    return Path(cfg.images), Path(cfg.labels), Path(cfg.out)


def ingest(cfg: IngestConfig) -> dict[str, Any]:
    """Write the crops, the labels table and the summary; return the summary."""
    images_dir, labels_path, out = check(cfg)
    labels = read_labels(cfg.layout, labels_path, Path(cfg.metadata) if cfg.metadata else None,
                         cfg.id_column, cfg.target_column, cfg.patient_column)
    files, other = find_images(images_dir)
    labelled = set(labels["isic_id"].to_list())
    no_label = sorted(set(files) - labelled)
    no_image = sorted(labelled - set(files))
    both = sorted(labelled & set(files))
    if not both:
        raise DataError(f"{images_dir}: none of its {len(files)} JPEG(s) has a label row in "
                        f"{labels_path} (ids are file names without .jpg, e.g. "
                        f"{next(iter(files), 'none')!r} vs {labels['isic_id'][0]!r})")
    bad: list[dict[str, str]] = []
    written = write_crops(out / IMAGES, crops(both, files, cfg, bad))
    skipped = {b["isic_id"] for b in bad}
    table = labels.filter(pl.col("isic_id").is_in([i for i in both if i not in skipped]))
    write_csv(table.sort("isic_id"), out / LABELS)
    summary = {
        "config": asdict(cfg), "images": str(out / IMAGES), "labels": str(out / LABELS),
        "written": written, "positives": int(table["target"].sum()),
        "patients_known": int(table["patient_id"].drop_nulls().n_unique()),
        "rows_without_patient": int(table["patient_id"].null_count()),
        "images_without_label": no_label, "labels_without_image": no_image,
        "bad_images": bad, "other_files": other,
    }
    write_json(summary, out / SUMMARY)
    for what, items in (("image(s) without a label row", no_label),
                        ("label row(s) without an image", no_image),
                        ("unreadable image(s) skipped", bad), ("non-JPEG file(s)", other)):
        if items:
            log.warning("ingest: %d %s, listed in %s", len(items), what, out / SUMMARY)
    log.info("ingest: wrote %d crops (%d positive) to %s and %s", written,
             summary["positives"], out / IMAGES, out / LABELS)
    return summary


def run(cfg: IngestConfig) -> dict[str, Any]:
    """CLI entry (``isic ingest``)."""
    return ingest(cfg)
