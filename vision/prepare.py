"""What one image run reads, recorded by content, and where its crops come from.

``build_inputs`` assembles the fold table (+ fusion features), the test rows and the
provenance record (hashes of the folds, crops, tabular scores and the ``init_from`` run);
``prepare_run_dir`` keeps an interrupted run's folds only when the config and every input are
unchanged, and logs which changed; ``open_sources`` decodes the crops once into a cache when
they fit in memory, else streams them from the HDF5 after one decode check of every crop.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.folds import read_folds
from isicstack.data.io import DataError, write_json
from isicstack.data.layout import (
    TEST_IMAGES,
    TEST_META,
    TRAIN_IMAGES,
    folds_path,
    oof_path,
    resolve_data_dir,
    run_dir,
    test_pred_path,
)
from isicstack.data.provenance import (
    changed_inputs,
    describe_inputs,
    fold_hash,
    read_provenance,
    write_provenance,
)
from isicstack.settings.build import build
from isicstack.settings.keys import flatten
from isicstack.settings.layers import (
    ConfigError,
    read_saved_config,
    save_config,
    to_dict,
    tuned_record,
)
from isicstack.vision.cache import build_cache, check_crops
from isicstack.vision.config import ImageConfig
from isicstack.vision.data import BlankForBad, ImageSource, open_source
from isicstack.vision.distributed import is_rank_zero
from isicstack.vision.fold_table import (
    FUSION_FILE,
    TAB_COLS,
    TrainInputs,
    add_fusion,
    image_only_folds,
    load_test_rows,
    require_crops,
)

log = logging.getLogger(__name__)

# (dotted) keys that may change between an interrupted run and its resumption
RESUME_FREE_KEYS = {"data.num_workers", "runtime.cpu_threads", "runtime.devices",
                    "runtime.strategy", "runtime.accelerator", "resume", "folds", "artifacts",
                    "data.data_mode", "data.cache_max_gb", "optim.val_every"}


def build_inputs(cfg: ImageConfig, rdir: Path) -> TrainInputs:
    """Train table (folds + optional fusion features), test rows and the provenance record."""
    if cfg.images_path or cfg.labels_path:  # image-only mode on any HDF5 + labels table
        if not (cfg.images_path and cfg.labels_path):
            raise ValueError("image-only mode needs both images_path and labels_path")
        if cfg.fusion:
            raise ValueError("image-only mode has no tabular scores: set fusion=false")
        images = Path(cfg.images_path)
        table = image_only_folds(Path(cfg.labels_path), images, Path(cfg.artifacts),
                                 cfg.n_folds, cfg.seed)
        inputs = TrainInputs(table, images)
        paths: dict[str, Any] = {"labels": cfg.labels_path, "images": images}
    else:
        data_dir = resolve_data_dir(cfg.data_dir, cfg.profile)
        images = data_dir / TRAIN_IMAGES
        table = read_folds(cfg.artifacts).select("isic_id", "patient_id", "target", "fold")
        require_crops(table["isic_id"], images, "train")
        found = load_test_rows(data_dir, TEST_META, TEST_IMAGES) if cfg.predict_test else None
        test, test_images = found if found else (None, None)
        inputs = TrainInputs(table, images, (), test, test_images)
        paths = {"folds": folds_path(cfg.artifacts), "images": images}
        if test_images is not None:
            paths["test_images"] = test_images
        if cfg.fusion:
            _fuse(cfg, inputs, rdir)
            paths["tabular_oof"] = oof_path(cfg.artifacts, cfg.tabular_name)
            paths["tabular_test"] = test_pred_path(cfg.artifacts, cfg.tabular_name)
    if cfg.init_from:
        paths.update(_init_inputs(cfg, inputs.table))
    inputs.provenance = {"inputs": describe_inputs(paths), "fold_hash": fold_hash(inputs.table)}
    return inputs


def _fuse(cfg: ImageConfig, inputs: TrainInputs, rdir: Path) -> None:
    """Add the standardised tabular score columns; save the statistics for offline inference."""
    inputs.table, inputs.test, stats = add_fusion(inputs.table, inputs.test, cfg.artifacts,
                                                  cfg.tabular_name)
    inputs.tab_cols = TAB_COLS
    if not is_rank_zero():  # DDP: rank 0 writes the run's files
        return
    write_json({"tabular_name": cfg.tabular_name, "columns": list(TAB_COLS), **stats},
               rdir / FUSION_FILE)
    log.info("fusion: %s from %s (mean %s, std %s)", TAB_COLS, cfg.tabular_name,
             np.round(stats["mean"], 3), np.round(stats["std"], 3))


def _init_inputs(cfg: ImageConfig, table: pl.DataFrame) -> dict[str, Path]:
    """The ``init_from`` run's fold models, which must come from the same folds."""
    src = run_dir(cfg.artifacts, cfg.init_from)
    made_on = read_provenance(src).get("fold_hash")
    if made_on is None:
        raise FileNotFoundError(f"{src}: no finished image run to start from (init_from="
                                f"{cfg.init_from!r}); run it first (make train-image-only)")
    if made_on != fold_hash(table):
        raise DataError(f"{src}: init_from run was trained on other folds (fold hash {made_on} "
                        f"vs {fold_hash(table)}): its models saw this run's validation rows. "
                        "Retrain it on the current folds.parquet")
    return {f"init_fold{k}": src / f"fold{k}" / "last.ckpt"
            for k in sorted(int(f) for f in table["fold"].unique())}


def prepare_run_dir(cfg: ImageConfig, rdir: Path, provenance: dict[str, Any],
                    conditions: dict[str, Any] | None = None) -> None:
    """Start fresh unless resuming the same config on the same inputs; record both."""
    old_path = rdir / "config.yaml"
    fresh = not cfg.resume
    if cfg.resume and old_path.is_file():
        # a run saved before the keys were grouped is compared as the grouped keys, and a key
        # added since takes its default (what that run ran with), not "changed"
        saved = read_saved_config(ImageConfig, old_path)
        try:
            old = flatten(to_dict(build(ImageConfig, saved)))
        except ConfigError:  # a key this code does not know: compared as written
            old = flatten(saved)
        new = flatten(to_dict(cfg))
        changed = sorted(k for k in new if k not in RESUME_FREE_KEYS and old.get(k) != new[k])
        inputs = changed_inputs(read_provenance(rdir).get("inputs", {}),
                                provenance["inputs"])
        if changed or inputs:
            log.warning("%s: %s changed since the last run; not resuming, starting fresh", rdir,
                        ", ".join([*(f"config {k}" for k in changed),
                                   *(f"input {k}" for k in inputs)]))
            fresh = True
    if fresh:
        for d in rdir.glob("fold*"):
            shutil.rmtree(d, ignore_errors=True)
    save_config(cfg, old_path)
    write_provenance(rdir, provenance["inputs"], fold_hash=provenance["fold_hash"],
                     conditions=conditions, tuned=tuned_record(cfg))


@dataclass
class Sources:
    """Where train and test crops come from, and the crops that could not be read."""

    train: ImageSource
    test: ImageSource | None
    mode: str
    bad_ids: list[str]


def open_sources(cfg: ImageConfig, inputs: TrainInputs, rt: dict[str, Any]) -> Sources:
    """Decode-once caches when they fit in ``data.cache_max_gb`` (or ``data.data_mode: memory``),
    else the HDF5 streamed per sample (DataLoader workers decode). Either way a crop that cannot
    be decoded is found here, before training: an error naming it, or (``data.on_bad_image: skip``)
    listed, left out of training and scored from a blank crop."""
    train_ids = inputs.table["isic_id"].to_list()
    test_ids = [] if inputs.test is None else inputs.test["isic_id"].to_list()
    dc, size = cfg.data, cfg.model.image_size
    need = (len(train_ids) + len(test_ids)) * 3 * size ** 2 / 2**30
    mode = dc.data_mode
    if mode == "auto":
        mode = "memory" if need <= dc.cache_max_gb else "stream"
    folder = Path(cfg.artifacts) / "cache"
    parts = [(inputs.images_path, train_ids)]
    if inputs.test_images is not None and test_ids:
        parts.append((inputs.test_images, test_ids))
    sources: list[ImageSource] = []
    bad: list[str] = []
    for images, ids in parts:
        stream = open_source(images, dc.color_constancy)
        if mode == "stream":
            found = check_crops(images, ids, folder, dc.on_bad_image, dc.num_workers)
            store = getattr(stream, "store", None)  # an HDF5: find each crop once, here, so
            if store is not None:  # every loader worker reads it with one pread from the start
                t0 = time.perf_counter()
                n = store.index(ids, sizes=dc.augment_on == "device")  # sizes: device path
                log.info("%s: %d crops located in %.1fs", images, n, time.perf_counter() - t0)
            sources.append(BlankForBad(stream, found, size) if found else stream)
        else:
            cached, found = build_cache(stream, images, ids, size, dc.color_constancy, folder,
                                        dc.on_bad_image)
            sources.append(cached)
        bad += found
    if bad:
        log.warning("%d crop(s) could not be read and are left out of training (scored from "
                    "a blank crop): %s", len(bad), ", ".join(bad[:10]))
    return Sources(sources[0], sources[1] if len(sources) > 1 else None, mode, bad)
