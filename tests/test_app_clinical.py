"""The web app with calibration maps: the calibrated risk, the one-lesion warning, and one
patient's lesions scored together from a CSV (without a browser; see test_app_browser.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from app_fixtures import make_clinic_artifacts
from PIL import Image

from isicstack.app.config import AppConfig
from isicstack.app.page import handle_patient, load_clinic, render
from isicstack.app.patient import measured_shift, read_patient_csv, single_lesion_warning
from isicstack.app.validate import InputError, read_upload
from isicstack.data.crops import CropStore


@pytest.fixture(scope="module")
def cfg(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> AppConfig:
    art = make_clinic_artifacts(mini_isic, mini_artifacts,
                                tmp_path_factory.mktemp("app_cal") / "artifacts", calibrate=True)
    return AppConfig(artifacts=str(art), cpu_threads=1, n_boot=20)


@pytest.fixture(scope="module")
def clinic(cfg: AppConfig):
    return load_clinic(cfg)


@pytest.fixture(scope="module")
def patient(mini_isic: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One test patient's rows as a CSV (train-only columns dropped) and their crops as PNG."""
    test = pl.read_csv(mini_isic / "test-metadata.csv", infer_schema=False)
    pid = test["patient_id"].value_counts(sort=True)["patient_id"][0]
    rows = test.filter(pl.col("patient_id") == pid).head(6)
    folder = tmp_path_factory.mktemp("patient")
    rows.drop("patient_id").with_columns(note=pl.lit("x")).write_csv(folder / "lesions.csv")
    paths = []
    with CropStore(mini_isic / "test-image.hdf5") as store:
        for isic_id in rows["isic_id"]:
            Image.fromarray(store.read(isic_id, fast=True)).save(folder / f"{isic_id}.png")
            paths.append(str(folder / f"{isic_id}.png"))
    return {"csv": folder / "lesions.csv", "crops": paths, "rows": rows, "folder": folder}


def test_calibrated_risk_is_shown_first(clinic, cfg: AppConfig, patient: dict):
    image = read_upload(patient["crops"][0], cfg.max_pixels)
    alone = clinic.score(image, None)
    assert alone.risk is not None and 0 < alone.risk < 1 and alone.risk_note == ""
    text = render(alone, 0.8)
    assert text.startswith("### Calibrated risk:") and "model score" in text
    assert "Single lesion" not in text  # the image-only model has no patient features
    stacked = clinic.score(image, {"age_approx": 60.0})
    cal = clinic.stack["route"].cal  # the scorer's map: the API's answer is the same
    assert stacked.risk == pytest.approx(float(cal.apply(np.array([stacked.score]))[0]))
    text = render(stacked, 0.8)
    assert "### Calibrated risk:" in text and "**Single lesion:**" in text
    assert "patient-relative features" in text


def test_patient_csv_scored_together(clinic, cfg: AppConfig, patient: dict):
    text = handle_patient(clinic, cfg, str(patient["csv"]), patient["crops"])
    assert text.startswith("### 6 lesion(s) of one patient, scored together"), text
    assert text.count("| ISIC_") == 6 and "calibrated risk" in text
    assert "Single lesion" not in text and "ignored: note" in text
    rows, _ = read_patient_csv(patient["csv"], 100)
    images = {Path(p).stem: read_upload(p, cfg.max_pixels) for p in patient["crops"]}
    together = clinic.score_patient(rows, images)
    alone = clinic.score_patient(rows.head(1), {rows["isic_id"][0]: images[rows["isic_id"][0]]})
    assert together.scores[0] != alone.scores[0]  # the patient context moves the score
    assert "Single lesion" in alone.notes[0]


def test_patient_csv_errors_are_sentences(clinic, cfg: AppConfig, patient: dict,
                                          tmp_path: Path):
    text = handle_patient(clinic, cfg, str(patient["csv"]), patient["crops"][:2])
    assert "No crop for 4 lesion(s)" in text and "<isic_id>.jpg" in text
    two = tmp_path / "two.csv"
    pl.DataFrame({"isic_id": ["a", "b"], "patient_id": ["p1", "p2"]}).write_csv(two)
    assert "one patient's lesions at a time" in handle_patient(clinic, cfg, str(two), [])
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"isic_id": ["a"], "age_approx": ["old"]}).write_csv(bad)
    with pytest.raises(InputError, match="column 'age_approx', lesion a: 'old' is not"):
        read_patient_csv(bad, 10)
    none = tmp_path / "none.csv"
    pl.DataFrame({"lesion": ["a"]}).write_csv(none)
    assert "no isic_id column" in handle_patient(clinic, cfg, str(none), [])
    assert "Upload a CSV" in handle_patient(clinic, cfg, None, None)


def test_warning_cites_the_measured_shift(tmp_path: Path):
    assert single_lesion_warning(3) == ""
    path = tmp_path / "single_lesion.json"
    path.write_text('{"summary": {"lesions": 500, "data": "synthetic", "risk_abs_median": '
                    '0.0012, "risk_abs_p90": 0.02, "flag_changed": 0.034}}')
    text = measured_shift(path)
    assert "500 held-out synthetic lesions" in text and "3.4% crossed" in text
    assert "median of 0.12 percentage points (90th percentile 2.00)" in text
    path.write_text("{}")
    assert measured_shift(path) == ""
    assert "bench_single_lesion.py" in measured_shift(tmp_path / "absent.json")  # a wheel
