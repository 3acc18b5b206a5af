"""Shared fixtures: the real Kaggle fixture files and a session-scoped synthetic mini-ISIC."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never let timm wait on a hub here
# stage runs here log to MLflow only where a test turns it on (tests/test_tracking.py): a new
# store per tmp artifacts folder would add seconds to every stage test
os.environ.setdefault("ISIC_TRACKING", "none")


def _share_cores_among_workers() -> None:
    """Under pytest-xdist (``make test`` runs one worker per core, at most 4) each worker sizes
    its threads by its share of the cores: the stages by ``ISIC_CORES``
    (``conditions.usable_cores``), torch, OpenMP and polars by their own variables (set before
    any of them is imported; child processes inherit them). Two workers each running 2 OpenMP
    threads on 2 cores wait on each other far longer than they compute."""
    from isicstack.conditions import usable_cores  # stdlib only: imports no thread pool

    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not os.environ.get("PYTEST_XDIST_WORKER") or not count:
        return
    share = str(max(1, usable_cores() // int(count)))
    for var in ("ISIC_CORES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
        os.environ.setdefault(var, share)


_share_cores_among_workers()

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ISIC_SHARED", REPO.parent / "shared"))


REAL_FIXTURES = SHARED / "fixtures" / "isic2024"
HAVE_REAL = (REAL_FIXTURES / "test-metadata.csv").is_file()
# Every test of the Kaggle file contract runs on the synthetic copy and on the real files. The
# real case is always collected (the same test ids with or without ../shared) and, without the
# files, skipped with the reason in the report: never left out silently.
FIXTURE_SOURCES = ["synthetic", pytest.param("real", marks=pytest.mark.skipif(
    not HAVE_REAL, reason=f"real ISIC 2024 fixture files not found in {REAL_FIXTURES} "
                          "(../shared or $ISIC_SHARED)"))]


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """The official 3-row test files and 100 real train rows (skip when shared/ is absent)."""
    if not HAVE_REAL:
        pytest.skip(f"real ISIC 2024 fixture files not found in {REAL_FIXTURES}")
    return REAL_FIXTURES


@pytest.fixture(scope="session")
def synthetic_fixtures(mini_isic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real fixture folder's files, cut from the synthetic mini-ISIC (same names, layout).

    ``train-metadata-first100.csv`` (first 100 train rows), ``test-metadata.csv`` (3 rows of 3
    patients), their ``test-image.hdf5`` and ``sample_submission.csv``, and
    ``test-metadata-v1.csv`` with the first release's bug (tbp_lv_stdLExt = tbp_lv_Lext).
    """
    import polars as pl

    from isicstack.data.crops import CropStore, write_crops
    from isicstack.data.io import write_csv

    out = tmp_path_factory.mktemp("synthetic_fixtures")
    lines = (mini_isic / "train-metadata.csv").read_text(encoding="utf-8").splitlines(True)
    (out / "train-metadata-first100.csv").write_text("".join(lines[:101]), encoding="utf-8")
    test = pl.read_csv(mini_isic / "test-metadata.csv", infer_schema=False)
    test = test.unique("patient_id", keep="first", maintain_order=True).head(3)
    write_csv(test, out / "test-metadata.csv")
    write_csv(test.with_columns(tbp_lv_stdLExt=pl.col("tbp_lv_Lext")), out / "test-metadata-v1.csv")
    store = CropStore(mini_isic / "test-image.hdf5")
    write_crops(out / "test-image.hdf5", [(i, store.read_bytes(i)) for i in test["isic_id"]])
    write_csv(test.select("isic_id", target=pl.lit(0.3)), out / "sample_submission.csv")
    return out


@pytest.fixture(scope="session", params=FIXTURE_SOURCES)
def kaggle_fixtures(request: pytest.FixtureRequest) -> Path:
    """A folder with the real fixture files' names: synthetic always, real when present."""
    if request.param == "real":
        return REAL_FIXTURES
    return request.getfixturevalue("synthetic_fixtures")


@pytest.fixture(scope="session")
def kaggle_is_real(kaggle_fixtures: Path) -> bool:
    """True for the real fixture folder (tests add checks of its known values)."""
    return kaggle_fixtures == REAL_FIXTURES


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
    from isicstack.synthetic.config import SynthConfig
    from isicstack.synthetic.generate import generate

    out = tmp_path_factory.mktemp("mini_isic")
    cfg = SynthConfig(rows=1500, test_rows=120, patients=40, prevalence=0.04, image_size=32,
                      seed=7, out=str(out), workers=1)
    return generate(cfg)


@pytest.fixture(scope="session")
def mini_artifacts(mini_isic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts folder holding 3 folds of ``mini_isic`` (other stages write beside them)."""
    from isicstack.data.config import FoldsConfig
    from isicstack.data.folds import ensure_folds

    art = tmp_path_factory.mktemp("artifacts")
    ensure_folds(FoldsConfig(data_dir=str(mini_isic), artifacts=str(art), n_folds=3, seed=0))
    return art


@pytest.fixture(scope="session")
def clinic_calibrated(mini_isic: Path, mini_artifacts: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Saved clinic runs with calibration maps (tests/app_fixtures.py), made once per session
    and read only: the calibrated web page and the scoring API share them (~17 s to train)."""
    from app_fixtures import make_clinic_artifacts

    return make_clinic_artifacts(mini_isic, mini_artifacts,
                                 tmp_path_factory.mktemp("clinic_cal") / "artifacts",
                                 calibrate=True)
