"""The deployable model (issue 29): reference statistics, `isic bundle` (the Kaggle package's
packager + bundle.json + reference.json), the few-lesions run, and the MLflow Model Registry
(register, promote, resolve). One module-scoped bundle from a small LightGBM and its solo twin.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isicstack.data.predictions import discover
from isicstack.serving.config import BundleConfig
from isicstack.serving.manifest import BundleError, content_hash, verify
from isicstack.serving.reference import (
    bin_fractions,
    categorical_stat,
    crop_stats,
    numeric_stat,
    review,
)

# --- reference statistics: pure functions ----------------------------------------------------


def test_crop_stats_of_one_crop():
    img = np.zeros((4, 6, 3), dtype=np.uint8)
    img[..., 0] = 200
    img[:2, :, 2] = 100
    s = crop_stats(img)
    assert (s["width"], s["height"]) == (6.0, 4.0)
    assert (s["mean_r"], s["mean_g"], s["mean_b"]) == (200.0, 0.0, 50.0)
    assert s["brightness"] == pytest.approx(0.299 * 200 + 0.114 * 50)
    with pytest.raises(ValueError, match="RGB"):
        crop_stats(np.zeros((4, 6)))


def test_numeric_and_categorical_stats():
    x = pl.Series("a", [*range(100), None, float("nan")], dtype=pl.Float64)
    s = numeric_stat(x, sample=10, seed=1)
    assert len(s["edges"]) == 11 and s["edges"][0] == 0 and s["edges"][-1] == 99
    assert len(s["fractions"]) == 10 and sum(s["fractions"]) == pytest.approx(1.0)
    assert s["missing"] == pytest.approx(2 / 102) and (s["min"], s["max"]) == (0.0, 99.0)
    assert len(s["sample"]) == 10 and s["sample"] == numeric_stat(x, 10, 1)["sample"]
    # outer bins are open: values beyond the training range land in the end bins
    assert bin_fractions(s["edges"], [-5, 1000]) == [0.5] + [0.0] * 8 + [0.5]
    const = numeric_stat(np.full(5, 3.0))
    assert const["edges"] == [3.0, 3.0] and const["fractions"] == [1.0]
    empty = numeric_stat([np.nan, np.nan])
    assert empty["missing"] == 1.0 and empty["edges"] == [] and empty["min"] is None
    c = categorical_stat(pl.Series("sex", ["male", "male", "female", None]))
    assert c == {"fractions": {"male": 0.5, "female": 0.25}, "missing": 0.25}
    assert review(np.array([0.1, 0.5, 0.9, np.nan]), 0.5) == {"threshold": 0.5,
                                                              "rate": 2 / 3, "n": 3}


# --- isic bundle on a small LightGBM + its solo twin -------------------------------------------


@pytest.fixture(scope="module")
def solo_art(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Path:
    """lgbm (all features) and lgbm_solo (the chain's solo run), calibrated."""
    from isicstack.evaluation.calibrate import run as calibrate
    from isicstack.evaluation.config import CalibrateConfig
    from isicstack.settings.chain import load_chain
    from isicstack.settings.layers import load_config
    from isicstack.tabular.config import TabularConfig
    from isicstack.tabular.cv import run as train_tabular

    art = tmp_path_factory.mktemp("bundle") / "artifacts"
    art.mkdir()
    for name in ("folds.parquet", "folds.json"):
        shutil.copy2(mini_artifacts / name, art / name)
    common = [f"data_dir={mini_isic}", f"artifacts={art}", "bags=1", "threads=1",
              "neg_ratio=5", "models.xgb.enabled=false", "models.lgbm.num_rounds=20",
              "models.lgbm.params={min_data_in_leaf: 5}"]
    solo = load_chain().get("train-tabular-solo")
    for extra in ([], solo.overrides("smoke")):
        train_tabular(load_config(TabularConfig, "tabular", "smoke", [*common, *extra]))
    calibrate(CalibrateConfig(artifacts=str(art), data_dir=str(mini_isic), n_boot=0))
    assert (art / "calibration" / "lgbm_solo.json").is_file()  # calibrate maps the solo run
    assert discover(art) == ["lgbm"]  # ... and the stack does not read it
    assert discover(art, include_solo=True) == ["lgbm", "lgbm_solo"]
    return art


def _bundle(art: Path, data: Path, out: Path, *overrides: str, **kw) -> Path:
    from isicstack.serving.bundle import run as bundle

    return bundle(BundleConfig(data_dir=str(data), artifacts=str(art), out_dir=str(out),
                               predict_overrides=["stacker=", *overrides], sample=200, **kw))


@pytest.fixture(scope="module")
def built(solo_art: Path, mini_isic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bundle(solo_art, mini_isic, tmp_path_factory.mktemp("dist") / "bundle")


def test_bundle_manifest_and_reference(built: Path, solo_art: Path):
    doc = verify(built)  # every file's size and SHA-256, the content hash
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{8}", doc["version"])
    assert doc["version"].endswith(doc["content_hash"][:8])
    assert content_hash(doc["files"]) == doc["content_hash"]
    assert {"predict.yaml", "artifacts/calibration/lgbm.json",
            "artifacts/calibration/lgbm_solo.json"} <= set(doc["files"])
    assert any(f.startswith("artifacts/runs/lgbm_solo/") for f in doc["files"])
    assert doc["submitted"] == ["lgbm"] and doc["stacker"] is None
    assert doc["research_use"] == "research use, not a medical device"
    full, solo = doc["scorers"]["full"], doc["scorers"]["solo"]
    assert full["name"] == "lgbm" and solo["name"] == "lgbm_solo" and solo["max_lesions"] == 4
    assert full["calibrated"] and solo["calibrated"]
    metrics = json.loads((solo_art / "runs" / "lgbm_solo" / "metrics.json").read_text())
    assert solo["cv"] == {"pauc": metrics["pauc"], "auc": metrics["auc"]}
    op = full["operating_point"]
    assert set(op) == {"target_tpr", "threshold", "tpr", "fpr", "review_rate", "rows",
                       "patients"}
    assert doc["training_data"]["synthetic"]  # the mini-ISIC: a Space's licence follows it
    assert op["tpr"] >= 0.8 and 0 < op["review_rate"] < 1
    ref = json.loads((built / "reference.json").read_text())
    assert ref["format"] == 1 and ref["rows"] == 1500
    assert {"age_approx", "tbp_lv_H"} <= set(ref["numeric"]) and "sex" in ref["categorical"]
    assert set(ref["crops"]) == {"width", "height", "brightness", "mean_r", "mean_g", "mean_b"}
    assert ref["crops"]["width"]["max"] > 0 and len(ref["crops"]["mean_r"]["sample"]) == 200
    for name in ("full", "solo"):  # the expected review rate is the scorer's own
        assert ref["review"][name]["threshold"] == doc["scorers"][name]["operating_point"][
            "threshold"]
        assert ref["review"][name]["rate"] == pytest.approx(
            doc["scorers"][name]["operating_point"]["review_rate"])
    assert ref["scores"]["full"]["max"] <= 1


def test_bundle_refuses_other_folders_and_tampering(built: Path, solo_art: Path,
                                                    mini_isic: Path, tmp_path: Path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a bundle"):
        _bundle(solo_art, mini_isic, other, solo="")
    assert (other / "keep.txt").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / "predict.yaml").write_text((copy / "predict.yaml").read_text() + "# edited\n")
    with pytest.raises(BundleError, match="predict.yaml differs"):
        verify(copy)
    (copy / "bundle.json").unlink()
    with pytest.raises(BundleError, match="not a bundle"):
        verify(copy)


def _changed_copy(bundle: Path, out: Path) -> Path:
    """A second bundle without a second build: ``predict.yaml`` edited, the manifest redone."""
    from isicstack.data.provenance import file_sha256

    shutil.copytree(bundle, out)
    (out / "predict.yaml").write_text((out / "predict.yaml").read_text() + "# v2\n")
    doc = json.loads((out / "bundle.json").read_text())
    doc["files"]["predict.yaml"] = {"sha256": file_sha256(out / "predict.yaml"),
                                    "bytes": (out / "predict.yaml").stat().st_size}
    doc["content_hash"] = content_hash(doc["files"])
    (out / "bundle.json").write_text(json.dumps(doc))
    return out


def test_registry_versions_alias_and_resolve(built: Path, tmp_path: Path, monkeypatch):
    pytest.importorskip("mlflow")
    from isicstack.pipelines.cli import main
    from isicstack.serving.registry import register, resolve

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    art = tmp_path / "art"  # a registry of its own (sqlite under it), the module's runs intact
    art.mkdir()
    second = _changed_copy(built, tmp_path / "b2")
    want = verify(second)["content_hash"]
    assert want != verify(built)["content_hash"]
    assert register(built, art) == 1 and register(second, art) == 2
    assert main(["promote", "version=2", "alias=champion", f"artifacts={art}"]) == 0
    got = resolve("models:/isicstack@champion", art)
    assert json.loads((got / "bundle.json").read_text())["content_hash"] == want
    assert resolve("models:/isicstack@champion", art) == got  # cached, checked again
    assert verify(resolve("models:/isicstack/1", art))["content_hash"] != want
    assert resolve(str(built), art) == built
    with pytest.raises(LookupError, match="models:/isicstack@nope"):
        resolve("models:/isicstack@nope", art)
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        resolve(str(tmp_path / "no-such-folder"), art)
    assert main(["promote", "version=7", f"artifacts={art}"]) == 2  # one line, names it
    with pytest.raises(LookupError, match="no model registry"):  # and creates none
        resolve("models:/isicstack@champion", tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_stripped_checkpoint_is_the_same_bytes_whenever_copied(tmp_path: Path):
    """The content hash stays put across rebuilds: a checkpoint's zip archive is not named after
    the (random) temporary file it was written through."""
    import torch

    from isicstack.inference.package import copy_run_file

    src = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.arange(4.0)}, "optimizer_states": [1]}, src)
    copy_run_file(src, tmp_path / "a" / "last.ckpt")
    copy_run_file(src, tmp_path / "b" / "last.ckpt")
    a, b = ((tmp_path / d / "last.ckpt").read_bytes() for d in "ab")
    assert a == b and list(torch.load(tmp_path / "a" / "last.ckpt", weights_only=True)) == [
        "state_dict"]
