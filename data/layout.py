"""Where things live: the Kaggle file names inside a data directory and the artifact layout.

Every stage finds its inputs and writes its outputs through these functions, so the keyed
artifact contract (``isic_id`` -> prediction) is defined once.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from isicstack.data.provenance import read_provenance

TRAIN_META = "train-metadata.csv"
TEST_META = "test-metadata.csv"
TRAIN_IMAGES = "train-image.hdf5"
TEST_IMAGES = "test-image.hdf5"
SAMPLE_SUBMISSION = "sample_submission.csv"
ORACLE = "oracle.parquet"
log = logging.getLogger(__name__)

# Data sets live outside the code: ``datasets/`` at the repository root (ignored by git), so the
# ``data`` package is code only. ``data/raw/...`` is where real files went before; still read.
DATASETS_ROOT = Path("datasets")
REAL_DATA_DIR = DATASETS_ROOT / "isic-2024-challenge"
SYNTHETIC_ROOT = DATASETS_ROOT / "synthetic"
OLD_REAL_DATA_DIR = Path("data/raw/isic-2024-challenge")


def resolve_data_dir(data_dir: str | os.PathLike[str] = "auto", profile: str = "default") -> Path:
    """``auto`` means the real Kaggle files when present (``datasets/isic-2024-challenge``, or
    the former ``data/raw/isic-2024-challenge``), else the synthetic set of ``profile``."""
    if str(data_dir) != "auto":
        return Path(data_dir)
    if (REAL_DATA_DIR / TRAIN_META).is_file():
        return REAL_DATA_DIR
    if (OLD_REAL_DATA_DIR / TRAIN_META).is_file():
        log.warning("using the real files in %s, their former place: move them to %s",
                    OLD_REAL_DATA_DIR, REAL_DATA_DIR)
        return OLD_REAL_DATA_DIR
    return SYNTHETIC_ROOT / profile


def folds_path(artifacts: str | os.PathLike[str]) -> Path:
    """The one fold assignment every stage reads."""
    return Path(artifacts) / "folds.parquet"


def oof_path(artifacts: str | os.PathLike[str], name: str) -> Path:
    """Out-of-fold predictions of model ``name``: columns ``isic_id, fold, pred``."""
    return Path(artifacts) / "oof" / f"{name}.parquet"


def test_pred_path(artifacts: str | os.PathLike[str], name: str) -> Path:
    """Test predictions of model ``name``: columns ``isic_id, pred``."""
    return Path(artifacts) / "test" / f"{name}.parquet"


IMAGE_PART_SUFFIX = "_image_part"
# GBDTs without patient context (configs/chain.yaml `train-tabular-solo`): the bundle's model
# for patients with few lesions in a request, not a stack input
SOLO_SUFFIX = "_solo"


def image_part_name(name: str) -> str:
    """Predictions of a fused image run's image term alone (``vision_fused_image_part``): a
    second-pass GBDT feature, not a model of the target (the stack leaves it out by default)."""
    return f"{name}{IMAGE_PART_SUFFIX}"


def run_dir(artifacts: str | os.PathLike[str], name: str) -> Path:
    """Models, metrics and the resolved config of model ``name``."""
    return Path(artifacts) / "runs" / name


def run_stage(artifacts: str | os.PathLike[str], name: str) -> str:
    """Which stage wrote run ``name`` (``tabular``, ``image``, ``stack``), so ``isic predict``
    loads it with that stage's predictor whatever the run is called: the stage recorded in its
    ``provenance.json``, else (a run or Kaggle package written before it was recorded) read off
    its files: image runs hold fold checkpoints (``fold<k>/``), stackers ``stacker.json``."""
    rdir = run_dir(artifacts, name)
    if not rdir.is_dir() and name.endswith(IMAGE_PART_SUFFIX):  # a fused run's image term
        rdir = run_dir(artifacts, name.removesuffix(IMAGE_PART_SUFFIX))
    if not rdir.is_dir():
        raise FileNotFoundError(f"{rdir}: no such run folder; run the stage that writes "
                                f"{name!r} (or copy its run folder there)")
    stage = (read_provenance(rdir).get("conditions") or {}).get("stage")
    if stage:
        return str(stage)
    if (rdir / "stacker.json").is_file():
        return "stack"
    return "image" if any(rdir.glob("fold*/")) else "tabular"


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A run file the predict path needs, or an error naming it and what writes it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found; copy the whole run folder or rerun "
                                "the training stage that writes it")
    return json.loads(path.read_text(encoding="utf-8"))


def require_files(paths: list[Path], what: str) -> None:
    """Fail on the first missing model file, naming it (not just 'a file is missing')."""
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} not found ({len(paths)} expected)")
