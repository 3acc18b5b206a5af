"""Image stage runs: end to end, resume by steps, provenance (stale inputs, init_from folds),
``isic predict-images`` on an HDF5 and a JPEG folder, and a tiny model learning a planted colour.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import pytorch_lightning as lightning
import torch
from vision_fixtures import N_TEST, N_TRAIN, copy_artifacts, image_cfg, make_vision_data

from isicstack.data import layout
from isicstack.data.crops import BadImageError, encode_jpeg, write_crops
from isicstack.data.layout import folds_path, oof_path
from isicstack.data.metric import pauc
from isicstack.inference.config import PredictImagesConfig
from isicstack.inference.predict_images import run as predict_images
from isicstack.ledger.result import RunResult, read_result
from isicstack.settings.keys import with_keys
from isicstack.vision.train import run


@pytest.fixture(scope="module")
def vision_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_vision_data(tmp_path_factory.mktemp("vision_run"))


def _check_outputs(art: Path, name: str, folds: pl.DataFrame, test: bool) -> RunResult:
    oof = pl.read_parquet(oof_path(art, name))
    assert oof.columns == ["isic_id", "fold", "pred"]
    assert oof["isic_id"].n_unique() == oof.height
    joined = oof.join(folds, on="isic_id")
    assert joined.height == oof.height and (joined["fold"] == joined["fold_right"]).all()
    assert oof["pred"].is_between(0, 1).all()
    if test:
        tst = pl.read_parquet(layout.test_pred_path(art, name))
        assert tst.columns == ["isic_id", "pred"] and tst.height == N_TEST
        assert tst["isic_id"].n_unique() == N_TEST
    result = read_result(art / "runs" / name)
    assert result.stage == "image" and result.name == name
    assert (art / "runs" / name / "config.yaml").is_file()
    prov = json.loads((art / "runs" / name / "provenance.json").read_text())
    assert prov["fold_hash"] == result.fold_hash and "images" in prov["inputs"]
    return result


def test_run_fusion_end_to_end(vision_data: dict[str, Path]):
    art = vision_data["artifacts"]
    [out] = run(image_cfg(vision_data, None, {"data.tta_flip": True, "optim.val_every": 2,
                                              "optim.steps": 4}))
    folds = pl.read_parquet(folds_path(art))
    m = _check_outputs(art, "vision_test_resnet", folds, test=True)
    assert out == m and out.details["fusion"] is True and set(m.folds) == {0, 1, 2}
    assert all(f["steps"] == 4 for f in m.details["fold_records"].values())
    assert m.n == N_TRAIN and m.pauc is not None
    assert {"tabular_oof", "tabular_test", "folds"} <= set(
        json.loads((art / "runs" / "vision_test_resnet" / "provenance.json").read_text())
        ["inputs"])
    oof = pl.read_parquet(oof_path(art, "vision_test_resnet"))
    ref = oof.join(folds, on="isic_id", maintain_order="left")
    assert m.pauc == pytest.approx(pauc(ref["target"].to_numpy(), ref["pred"].to_numpy()))
    # the image term alone (tabular term left out), for the second GBDT pass
    part = pl.read_parquet(oof_path(art, "vision_test_resnet_image_part"))
    assert part.columns == ["isic_id", "fold", "pred"] and part.height == N_TRAIN
    assert part["pred"].is_between(0, 1).all()
    assert part.select("isic_id", "fold").equals(oof.select("isic_id", "fold"))
    assert not np.allclose(part["pred"].to_numpy(), oof["pred"].to_numpy())
    assert m.details["image_part"]["pauc"] == pytest.approx(
        pauc(ref["target"].to_numpy(), part["pred"].to_numpy()))
    tst = pl.read_parquet(layout.test_pred_path(art, "vision_test_resnet_image_part"))
    assert tst.columns == ["isic_id", "pred"] and tst.height == N_TEST
    logs = pl.read_csv(next((art / "runs" / "vision_test_resnet" / "fold0" / "logs")
                            .rglob("metrics.csv")))
    assert {"val/pauc", "val/auc", "val/loss", "train/loss"} <= set(logs.columns)


def test_run_image_only_fusion_off(vision_data: dict[str, Path], tmp_path: Path):
    art = copy_artifacts(vision_data, tmp_path / "art")
    run(image_cfg(vision_data, art, {"data.data_mode": "stream"}, fusion=False, folds=[1],
                  name="nofuse"))
    _check_outputs(art, "vision_nofuse", pl.read_parquet(folds_path(art)), test=True)
    assert not oof_path(art, "vision_nofuse_image_part").exists()  # fused runs only
    # image-only mode: HDF5 + labels CSV, own patient-grouped folds, no test predictions
    cfg = image_cfg(vision_data, tmp_path / "img", fusion=False, folds=[0], n_folds=3, name="io",
                    images_path=str(vision_data["data"] / "train-image.hdf5"),
                    labels_path=str(vision_data["labels"]), data_dir="/nonexistent")
    [out] = run(cfg)
    img_folds = pl.read_parquet(tmp_path / "img" / "folds_images.parquet")
    assert img_folds.height == N_TRAIN and img_folds["patient_id"].null_count() == 0
    _check_outputs(tmp_path / "img", "vision_io", img_folds, test=False)
    assert "test_path" not in out.details
    with pytest.raises(ValueError, match="fusion=false"):
        run(replace(cfg, fusion=True))


def test_predict_images_hdf5_and_jpeg_folder(vision_data: dict[str, Path], tmp_path: Path):
    art = copy_artifacts(vision_data, tmp_path / "art")
    [trained] = run(image_cfg(vision_data, art, {"optim.steps": 3}, fusion=False,
                              name="imgonly"))
    h5 = vision_data["data"] / "test-image.hdf5"
    out = predict_images(PredictImagesConfig(artifacts=str(art), images=str(h5),
                                             out=str(tmp_path / "h5.csv"), chunk_rows=4,
                                             cpu_threads=1, accelerator="cpu"))
    got = pl.read_csv(out["out"])
    assert got.columns == ["isic_id", "pred"] and got.height == N_TEST
    ref = pl.read_parquet(trained.details["test_path"]).join(got, on="isic_id")
    np.testing.assert_allclose(ref["pred"], ref["pred_right"], atol=1e-6)  # = training's test
    folder = tmp_path / "jpegs"
    folder.mkdir()
    from isicstack.data.crops import CropStore

    with CropStore(h5) as store:
        for k in store:
            (folder / f"{k}.jpg").write_bytes(store.read_bytes(k))
    out2 = predict_images(PredictImagesConfig(artifacts=str(art), images=str(folder),
                                              out=str(tmp_path / "dir.csv"), cpu_threads=1,
                                              accelerator="cpu"))
    same = got.join(pl.read_csv(out2["out"]), on="isic_id")
    assert same.height == N_TEST
    np.testing.assert_allclose(same["pred"], same["pred_right"], atol=1e-6)
    # a corrupt crop is named, and nothing is written
    (folder / "ISIC_9999999.jpg").write_bytes(b"\xff\xd8\xff garbage")
    bad_out = tmp_path / "bad.csv"
    with pytest.raises(BadImageError, match=r"ISIC_9999999\.jpg.*'ISIC_9999999'"):
        predict_images(PredictImagesConfig(artifacts=str(art), images=str(folder),
                                           out=str(bad_out), cpu_threads=1, accelerator="cpu"))
    assert not bad_out.exists()
    run(image_cfg(vision_data, art, {"optim.steps": 2}, name="fusedrun", folds=[0]))
    with pytest.raises(ValueError, match="fused run"):
        predict_images(PredictImagesConfig(artifacts=str(art), images=str(h5), cpu_threads=1,
                                           name="vision_fusedrun", accelerator="cpu"))


class _TrainIds(lightning.Callback):
    """Records, per fold trained, the ids of its training rows (what its sampler can draw)."""

    def __init__(self) -> None:
        self.ids: list[list[str]] = []

    def on_train_start(self, trainer: lightning.Trainer, pl_module: object) -> None:
        self.ids.append(list(trainer.train_dataloader.dataset.ids))


@pytest.mark.parametrize("mode,workers", [("memory", 0), ("stream", 0), ("stream", 1)])
def test_corrupt_training_crop_named_or_skipped(vision_data: dict[str, Path], tmp_path: Path,
                                                mode: str, workers: int):
    """Both data modes: `error` stops naming the crop and file (also after a `skip` run left
    its verdict in the cache); `skip` finishes, lists it, trains without it, scores it."""
    data = tmp_path / "data"
    data.mkdir()
    with __import__("h5py").File(vision_data["data"] / "train-image.hdf5") as f:
        items = [(k, bytes(f[k][()])) for k in f]
    victim = items[5][0]
    items[5] = (victim, b"\xff\xd8 not a jpeg")
    write_crops(data / "train-image.hdf5", items)
    art = copy_artifacts(vision_data, tmp_path / "art")
    folds = pl.read_parquet(folds_path(art))
    fold = int(folds.filter(pl.col("isic_id") == victim)["fold"][0])
    train_on = (fold + 1) % 3  # a fold whose training rows include the victim
    others = set(folds.filter(pl.col("fold") != train_on)["isic_id"].to_list())
    cfg = image_cfg(vision_data, art, {"data.data_mode": mode, "data.num_workers": workers},
                    data_dir=str(data), fusion=False, folds=[train_on, fold], predict_test=False)
    with pytest.raises(BadImageError, match=f"train-image.hdf5.*{victim}"):
        run(cfg)
    assert not list((art / "runs" / "vision_test_resnet").glob("fold*/fold.json"))
    seen = _TrainIds()
    [out] = run(with_keys(cfg, {"data.on_bad_image": "skip"}), callbacks=[seen])
    assert out.details["bad_images"] == [victim] and out.details["data_mode"] == mode
    assert len(seen.ids) == 2 and set(seen.ids[0]) == others - {victim}  # left out
    oof = pl.read_parquet(oof_path(art, "vision_test_resnet"))
    assert oof.filter(pl.col("isic_id") == victim)["pred"].is_between(0, 1).all()  # scored
    with pytest.raises(BadImageError, match=f"train-image.hdf5.*{victim}"):
        run(replace(cfg, resume=False))  # the cached verdict does not turn `error` into skip


def test_cli_train_image_smoke(vision_data: dict[str, Path], tmp_path: Path):
    from isicstack.pipelines.cli import main

    art = copy_artifacts(vision_data, tmp_path)
    rc = main(["train-image", "--profile", "smoke", f"data_dir={vision_data['data']}",
               f"artifacts={art}", "folds=[0]", "runtime.accelerator=cpu",
               "runtime.cpu_threads=1"])
    assert rc == 0 and oof_path(art, "vision_test_resnet").is_file()


def _colour_crops(n: int, rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """Skin-toned noisy crops with brown blobs; positives also carry a small blue-white patch
    at a random place (the synthetic generator's image-only cue, in miniature)."""
    y = (rng.random(n) < 0.12).astype(np.int8)
    crops = []
    for label in y:
        img = np.clip(rng.normal((190, 150, 130), 18, (32, 32, 3)), 0, 255)
        for _ in range(rng.integers(1, 4)):  # brown blobs on every crop
            cy, cx = rng.integers(4, 28, 2)
            img[cy - 3:cy + 3, cx - 3:cx + 3] = (110, 70, 50)
        if label:
            cy, cx = rng.integers(5, 27, 2)
            img[cy - 4:cy + 4, cx - 4:cx + 4] = (120, 135, 170)
        crops.append(encode_jpeg(img.astype(np.uint8)))
    return crops, y


@pytest.mark.parametrize("augment", [
    {},  # the default: flips in the loader, crops decoded once into memory
    # the full profile's path: streamed by a worker that only decodes, the strong recipe drawn
    # per crop on the batch after the transfer (vision/batch_augment.py)
    {"data.augment": "strong", "data.augment_on": "device", "data.data_mode": "stream",
     "data.num_workers": 1}], ids=["loader_flips", "device_strong_stream"])
def test_tiny_model_learns_planted_colour_signal(tmp_path: Path, augment: dict):
    """The stage's recipe (steps budget, fresh negatives, one-cycle, flips) finds a colour cue
    from random init on held-out folds; 2 short epochs of the first recipe did not."""
    rng = np.random.default_rng(7)
    crops, y = _colour_crops(400, rng)
    ids = [f"ISIC_{i:07d}" for i in range(len(y))]
    write_crops(tmp_path / "train-image.hdf5", list(zip(ids, crops, strict=True)))
    pl.DataFrame({"isic_id": ids, "target": y}).write_csv(tmp_path / "labels.csv")
    cfg = image_cfg({"data": tmp_path}, tmp_path / "art",
                    {"optim.steps": 60, "optim.lr": 3e-3, "data.batch_size": 32,
                     "data.neg_ratio": 4, **augment}, fusion=False, name="learn", n_folds=3,
                    images_path=str(tmp_path / "train-image.hdf5"),
                    labels_path=str(tmp_path / "labels.csv"))
    [out] = run(cfg)
    assert out.auc > 0.95 and out.pauc > 0.15, out


def test_ema_weights_are_the_ones_scored_and_saved(vision_data: dict[str, Path], tmp_path: Path):
    """ema_decay > 0: the fold is scored with the EMA weights, and last.ckpt holds those same
    weights (so predict-images reproduces the run's test predictions)."""
    art = copy_artifacts(vision_data, tmp_path / "art")
    [plain] = run(image_cfg(vision_data, art, {"optim.steps": 6}, fusion=False, name="plain",
                            folds=[0]))
    [ema] = run(image_cfg(vision_data, art, {"optim.steps": 6, "optim.ema_decay": 0.5,
                                             "optim.ema_start": 0.0},
                          fusion=False, name="ema", folds=[0]))
    a, b = (pl.read_parquet(r.details["test_path"])["pred"].to_numpy() for r in (plain, ema))
    assert not np.allclose(a, b)  # same seed and batches: only the averaging differs
    ckpt = torch.load(art / "runs" / "vision_ema" / "fold0" / "last.ckpt", map_location="cpu",
                      weights_only=True)
    assert "current_model_state" not in ckpt  # one set of weights: the averaged ones, scored
    got = predict_images(PredictImagesConfig(artifacts=str(art), name="vision_ema",
                                             images=str(vision_data["data"] / "test-image.hdf5"),
                                             out=str(tmp_path / "ema.csv"), cpu_threads=1,
                                             accelerator="cpu"))
    same = pl.read_parquet(ema.details["test_path"]).join(pl.read_csv(got["out"]), on="isic_id")
    np.testing.assert_allclose(same["pred"], same["pred_right"], atol=1e-6)
    with pytest.raises(ValueError, match="ema_decay"):
        run(image_cfg(vision_data, art, {"optim.ema_decay": 1.0}, fusion=False, name="bad"))
