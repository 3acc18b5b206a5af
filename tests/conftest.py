"""Shared fixtures: the real Kaggle fixture files and a session-scoped synthetic mini-ISIC."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never let timm wait on a hub here

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ISIC_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """The official 3-row test files and 100 real train rows (skip when shared/ is absent)."""
    path = SHARED / "fixtures" / "isic2024"
    if not (path / "test-metadata.csv").is_file():
        pytest.skip(f"real ISIC 2024 fixture files not found in {path}")
    return path


@pytest.fixture(scope="session")
def real_dev() -> Path:
    """The small real labelled benchmark (skip when absent)."""
    path = SHARED / "real-dev"
    if not (path / "tabular" / "train-metadata.csv").is_file():
        pytest.skip(f"real-dev benchmark not found in {path}")
    return path


@pytest.fixture(scope="session")
def mini_isic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data set in the exact Kaggle layout, generated once per session."""
    from isicstack.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("mini_isic")
    cfg = SynthConfig(rows=1500, test_rows=120, patients=40, prevalence=0.04, image_size=32,
                      seed=7, out=str(out), workers=1)
    return generate(cfg)


@pytest.fixture(scope="session")
def mini_artifacts(mini_isic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts folder holding 3 folds of ``mini_isic`` (other stages write beside them)."""
    from isicstack.data.folds import FoldsConfig, ensure_folds

    art = tmp_path_factory.mktemp("artifacts")
    ensure_folds(FoldsConfig(data_dir=str(mini_isic), artifacts=str(art), n_folds=3, seed=0))
    return art
