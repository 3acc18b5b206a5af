"""The web app without a browser: upload and metadata checks, image-only and stacked scores
through the shared prediction paths, the operating point, and errors that never escape.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
from app_fixtures import make_clinic_artifacts
from PIL import Image

from isicstack.app.config import AppConfig
from isicstack.app.page import build, handle, load_clinic, render
from isicstack.app.validate import (
    FIELDS,
    InputError,
    metadata_row,
    parse_metadata,
    read_upload,
)
from isicstack.data.crops import CropStore, write_crops
from isicstack.data.io import write_csv
from isicstack.pipelines.cli import main
from isicstack.vision.predict import ImagePredictor

RUN = "vision_imgonly"


@pytest.fixture(scope="module")
def art(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clinic_artifacts(mini_isic, mini_artifacts,
                                 tmp_path_factory.mktemp("app") / "artifacts")


@pytest.fixture(scope="module")
def cfg(art: Path) -> AppConfig:
    return AppConfig(artifacts=str(art), cpu_threads=1, n_boot=20)


@pytest.fixture(scope="module")
def clinic(cfg: AppConfig):
    return load_clinic(cfg)


@pytest.fixture(scope="module")
def crop(mini_isic: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A training crop as the HDF5 source decodes it, saved losslessly as PNG."""
    with CropStore(mini_isic / "train-image.hdf5") as store:
        isic_id = store.keys()[3]
        image = store.read(isic_id, fast=True)
    path = tmp_path_factory.mktemp("upload") / f"{isic_id}.png"
    Image.fromarray(image).save(path)
    return isic_id, path


def test_bad_uploads_get_a_sentence(tmp_path: Path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(InputError, match="notes.jpg: not a JPEG or PNG image"):
        read_upload(text, 1000)
    gif = tmp_path / "a.gif"
    Image.new("RGB", (8, 8)).save(gif)
    with pytest.raises(InputError, match="a.gif: a GIF image; upload a JPEG or PNG"):
        read_upload(gif, 1000)
    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 4000)).save(huge)  # 20 Mpx of black: a small file
    with pytest.raises(InputError, match=r"5000 x 4000 pixels is more than the 16,000,000"):
        read_upload(huge, 16_000_000)
    cut = tmp_path / "cut.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(cut)
    cut.write_bytes(cut.read_bytes()[:200])
    with pytest.raises(InputError, match="cut.jpg: the image could not be read"):
        read_upload(cut, 1000_000)
    with pytest.raises(InputError, match="Upload a lesion crop"):
        read_upload(None, 1000)
    rgba = tmp_path / "ok.png"
    Image.new("RGBA", (8, 8)).save(rgba)
    assert read_upload(rgba, 1000).shape == (8, 8, 3)  # alpha dropped


def test_metadata_is_checked():
    assert parse_metadata({"age_approx": None, "sex": "", "anatom_site_general": None}) is None
    meta = parse_metadata({"age_approx": 55, "sex": "female"})
    assert meta == {"age_approx": 55.0, "sex": "female"}
    for values, message in (({"age_approx": 500}, "age .*500 is outside 0 to 120"),
                            ({"age_approx": "abc"}, "'abc' is not a number"),
                            ({"tbp_lv_eccentricity": float("nan")}, "outside 0 to 1"),
                            ({"sex": "alien"}, "'alien' is not one of male, female"),
                            ({"target": 1}, "unknown metadata field")):
        with pytest.raises(InputError, match=message):
            parse_metadata(values)
    row = metadata_row(meta)
    assert row.height == 1 and row["age_approx"][0] == 55.0 and row["tbp_lv_x"][0] is None


def test_image_only_score_is_the_predict_path(clinic, cfg: AppConfig, crop, mini_isic: Path):
    isic_id, path = crop
    result = clinic.score(read_upload(path, cfg.max_pixels), None)
    ref = ImagePredictor(cfg.artifacts, RUN, mini_isic / "train-image.hdf5", "cpu", 8, 0, 1)
    assert result.score == pytest.approx(
        ref.predict(pl.DataFrame({"isic_id": [isic_id]}), {})[0], abs=1e-6)
    assert result.probability and RUN in result.model
    assert result.op["target_tpr"] == 0.8 and result.op["point"]["recall"] >= 0.8
    assert result.overlay is not None and result.overlay.shape[2] == 3
    text = render(result, 0.8)
    assert "Probability:" in text and "sensitivity" in text
    assert "specificity" in text and "Grad-CAM" in text


def test_metadata_uses_the_full_stack(clinic, cfg: AppConfig, crop, mini_isic: Path,
                                     tmp_path: Path):
    isic_id, path = crop
    image = read_upload(path, cfg.max_pixels)
    # every field of the form, as the crop's training row holds it (the models use them)
    row = pl.read_csv(mini_isic / "train-metadata.csv", infer_schema=False).filter(
        pl.col("isic_id") == isic_id).row(0, named=True)
    meta = parse_metadata({f.name: row[f.name] for f in FIELDS})
    result = clinic.score(image, meta)
    assert "stack `stack` (logistic over" in result.model and result.probability
    assert result.op is not None
    # the same lesion and metadata, a one-lesion patient of a test folder: `isic predict`
    # submits the same score
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    write_csv(metadata_row(meta).with_columns(isic_id=pl.lit(isic_id)),
              test_dir / "test-metadata.csv")
    with CropStore(mini_isic / "train-image.hdf5") as store:
        write_crops(test_dir / "test-image.hdf5", [(isic_id, store.read_bytes(isic_id))])
    assert main(["predict", f"data_dir={test_dir}", f"artifacts={cfg.artifacts}",
                 f"out={tmp_path / 'submission.csv'}", f"preds_dir={tmp_path / 'predict'}",
                 "accelerator=cpu", "num_workers=0", "cpu_threads=1"]) == 0
    sub = pl.read_csv(tmp_path / "submission.csv")
    assert sub["isic_id"].to_list() == [isic_id]
    assert result.score == pytest.approx(sub["target"][0], abs=1e-6)
    assert f"{len(meta)} field(s) given" in result.notes[0]
    assert clinic.stack["ops"]["full"][0]["point"]["threshold"] != clinic.image_op[0]["point"][
        "threshold"]


def test_without_a_stack_metadata_is_ignored_with_a_note(art: Path, tmp_path: Path, crop):
    only = tmp_path / "art"
    for part in ("folds.parquet", f"oof/{RUN}.parquet", f"runs/{RUN}"):
        (only / part).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (art / part).is_dir() else shutil.copy2
        copy(art / part, only / part)
    clinic = load_clinic(AppConfig(artifacts=str(only), cpu_threads=1, n_boot=0))
    assert clinic.stack is None and "lgbm" in clinic.stack_error
    result = clinic.score(read_upload(crop[1], 10**6), {"age_approx": 40.0})
    assert RUN in result.model and "Metadata ignored" in result.notes[0]


def test_handle_never_raises(clinic, cfg: AppConfig, crop, tmp_path: Path, monkeypatch):
    text = tmp_path / "x.png"
    text.write_text("hello")
    msg, heat = handle(clinic, cfg, str(text), *([None] * 10))
    assert "Cannot score this upload" in msg and "x.png: not a JPEG or PNG" in msg
    assert heat is None
    values = [None] * 10
    values[0] = 300
    msg, _ = handle(clinic, cfg, str(crop[1]), *values)
    assert "outside 0 to 120" in msg
    monkeypatch.setattr(clinic, "score", lambda *a: 1 / 0)
    msg, heat = handle(clinic, cfg, str(crop[1]), *([None] * 10))
    assert "Something went wrong" in msg and "ZeroDivisionError" in msg
    assert "Traceback" not in msg and heat is None


def test_app_config(monkeypatch, capsys):
    assert main(["app", "--print-config", "port=8123"]) == 0
    assert main(["app", "--print-config", "port=0"]) == 2
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the extra were not installed
    assert main(["app", "artifacts=nowhere"]) == 2
    assert "pip install 'isicstack[app]'" in capsys.readouterr().err


def test_page_has_named_api_endpoints(clinic, cfg: AppConfig):
    """Another program calls the page by name, with the metadata fields named as in ISIC 2024
    (Gradio's default would be an unnamed `/lambda` with param_1...)."""
    pytest.importorskip("gradio")
    api = build(clinic, cfg).get_api_info()["named_endpoints"]
    assert [p["parameter_name"] for p in api["/score_crop"]["parameters"]][:3] == [
        "crop", "age_approx", "sex"]
    assert [p["parameter_name"] for p in api["/score_patient"]["parameters"]] == [
        "lesions_csv", "crops"]
