"""Image stage: sampler, transforms, worker safety, end-to-end run, resume and fail-fast paths.

Everything runs on a 60-crop HDF5 written here (32 px, positives carry a bright disc) with
timm's 0.4M-parameter ``test_resnet``, so the whole module stays well under a minute on CPU.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import pytorch_lightning as pl_
import torch

from isicstack.config import load_config
from isicstack.data import layout
from isicstack.data.crops import CropStore, encode_jpeg, write_crops
from isicstack.data.folds import make_folds
from isicstack.data.io import DataError, write_parquet
from isicstack.data.layout import folds_path, oof_path
from isicstack.data.metric import pauc
from isicstack.data.schema import columns_for
from isicstack.vision.data import CropDataset, EvalTransform, TrainTransform, make_loader
from isicstack.vision.inputs import add_fusion, score_features
from isicstack.vision.model import create_backbone
from isicstack.vision.sampler import BalancedEpochSampler
from isicstack.vision.train import ImageConfig, run

N_TRAIN, N_TEST, SIZE = 60, 9, 32


def _crop(rng: np.random.Generator, positive: bool, size: int = SIZE) -> np.ndarray:
    img = rng.integers(60, 140, (size, size, 3)).astype(np.uint8)
    if positive:  # label visible in the image: a bright disc in the centre
        yy, xx = np.mgrid[:size, :size]
        img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = (250, 40, 40)
    return img


@pytest.fixture(scope="module")
def vision_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """data_dir (HDF5s + test-metadata.csv), artifacts (folds + tabular preds), labels CSV."""
    root = tmp_path_factory.mktemp("vision")
    data, art = root / "data", root / "artifacts"
    data.mkdir()
    rng = np.random.default_rng(0)
    ids = [f"ISIC_{i:07d}" for i in range(N_TRAIN)]
    target = (np.arange(N_TRAIN) % 4 == 0).astype(np.int8)  # 15 positives
    patient = [f"IP_{i % 20:03d}" for i in range(N_TRAIN)]
    write_crops(data / "train-image.hdf5",
                [(i, encode_jpeg(_crop(rng, bool(t)))) for i, t in zip(ids, target, strict=True)])
    test_ids = [f"ISIC_{9000000 + i}" for i in range(N_TEST)]
    write_crops(data / "test-image.hdf5",
                [(i, encode_jpeg(_crop(rng, k % 3 == 0))) for k, i in enumerate(test_ids)])
    cols = {c: [""] * N_TEST for c in columns_for("test")}
    cols["isic_id"], cols["patient_id"] = test_ids, [f"IP_T{i % 3}" for i in range(N_TEST)]
    pl.DataFrame(cols).write_csv(data / "test-metadata.csv")
    meta = pl.DataFrame({"isic_id": ids, "patient_id": patient, "target": target})
    folds = make_folds(meta, 3, 0)
    write_parquet(folds, folds_path(art))
    noisy = np.clip(0.3 * folds["target"].to_numpy() + rng.uniform(0, 0.6, N_TRAIN), 0.01, 0.99)
    write_parquet(folds.select("isic_id", "fold").with_columns(pred=pl.Series(noisy)),
                  oof_path(art, "lgbm"))
    write_parquet(pl.DataFrame({"isic_id": test_ids, "pred": rng.uniform(0, 1, N_TEST)}),
                  layout.test_pred_path(art, "lgbm"))
    labels = meta.with_columns(
        patient_id=pl.when(pl.col("isic_id").str.ends_with("7")).then(None)
        .otherwise(pl.col("patient_id")))  # some patients unknown, like real-dev
    labels.write_csv(root / "labels.csv")
    return {"data": data, "artifacts": art, "labels": root / "labels.csv", "root": root}


def _cfg(d: dict[str, Path], artifacts: Path | None = None, **kw: object) -> ImageConfig:
    base = ImageConfig(data_dir=str(d["data"]), artifacts=str(artifacts or d["artifacts"]),
                       model_name="test_resnet", image_size=SIZE, batch_size=8, epochs=1,
                       neg_ratio=2, num_workers=0, accelerator="cpu", seed=3)
    return replace(base, **kw)


def _copy_artifacts(d: dict[str, Path], dst: Path) -> Path:
    for f in ("folds.parquet", "oof/lgbm.parquet", "test/lgbm.parquet"):
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        (dst / f).write_bytes((d["artifacts"] / f).read_bytes())
    return dst


def test_sampler_balanced_fresh_and_seeded():
    y = np.array([1] * 5 + [0] * 95)
    s = BalancedEpochSampler(y, neg_ratio=3, seed=1)
    assert len(s) == 20
    epochs = []
    for e in range(3):
        s.set_epoch(e)
        idx = np.array(list(s))
        assert len(idx) == 20 and len(set(idx)) == 20
        assert set(np.flatnonzero(y == 1)) <= set(idx)
        assert (y[idx] == 0).sum() == 15
        epochs.append(idx)
    assert set(epochs[0]) != set(epochs[1]) != set(epochs[2])
    again = BalancedEpochSampler(y, neg_ratio=3, seed=1)
    again.set_epoch(1)
    assert np.array_equal(np.array(list(again)), epochs[1])
    other = BalancedEpochSampler(y, neg_ratio=3, seed=2)
    other.set_epoch(1)
    assert not np.array_equal(np.array(list(other)), epochs[1])
    assert len(BalancedEpochSampler(y, neg_ratio=0)) == 100  # 0 = keep every negative
    assert len(BalancedEpochSampler(y, neg_ratio=50)) == 100  # capped at all negatives
    with pytest.raises(ValueError, match="no positive"):
        BalancedEpochSampler(np.zeros(10), 3)


def test_transforms_shape_dtype_and_determinism():
    img = _crop(np.random.default_rng(1), True, size=45)[:, :40]  # non-square crop
    for cc in (False, True):
        ev, tr = EvalTransform(24, color_constancy=cc), TrainTransform(24, color_constancy=cc)
        a, b = ev(img), ev(img)
        assert a.shape == (3, 24, 24) and a.dtype == torch.float32 and torch.equal(a, b)
        torch.manual_seed(0)
        t1 = tr(img)
        torch.manual_seed(0)
        assert t1.shape == (3, 24, 24) and t1.dtype == torch.float32 and torch.equal(t1, tr(img))
        assert torch.isfinite(t1).all()


def _read_all(ds: CropDataset, ctx: str) -> list[int]:
    loader = make_loader(ds, batch_size=7, num_workers=2, multiprocessing_context=ctx)
    seen = []
    for batch in loader:
        assert batch["image"].shape[1:] == (3, 16, 16) and batch["tab"].shape[1] == 2
        seen += batch["index"].tolist()
    return seen


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_dataset_in_workers_never_opens_in_parent(vision_data: dict[str, Path], ctx: str):
    if ctx not in mp.get_all_start_methods():
        pytest.skip(f"{ctx} not available")
    store = CropStore(vision_data["data"] / "train-image.hdf5")
    ids = store.keys()[:20]
    store.close()
    ds = CropDataset(store, ids, EvalTransform(16), np.zeros(20), np.ones((20, 2), np.float32))
    assert ds.store._file is None
    assert sorted(_read_all(ds, ctx)) == list(range(20))
    assert ds.store._file is None, "the HDF5 file was opened in the parent process"


def _check_outputs(art: Path, name: str, folds: pl.DataFrame, test: bool) -> dict:
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
    metrics = json.loads((art / "runs" / name / "metrics.json").read_text())
    assert (art / "runs" / name / "config.yaml").is_file()
    return metrics


def test_run_fusion_end_to_end(vision_data: dict[str, Path]):
    out = run(_cfg(vision_data, tta_flip=True))
    folds = pl.read_parquet(folds_path(vision_data["artifacts"]))
    m = _check_outputs(vision_data["artifacts"], "vision_test_resnet", folds, test=True)
    assert out["fusion"] is True and set(m["folds"]) == {"0", "1", "2"}
    assert pl.read_parquet(oof_path(vision_data["artifacts"], "vision_test_resnet")).height \
        == N_TRAIN
    assert m["oof"]["n"] == N_TRAIN and m["oof"]["pauc"] is not None
    oof = pl.read_parquet(oof_path(vision_data["artifacts"], "vision_test_resnet"))
    ref = oof.join(folds, on="isic_id", maintain_order="left")
    assert m["oof"]["pauc"] == pytest.approx(pauc(ref["target"].to_numpy(), ref["pred"].to_numpy()))
    logs = pl.read_csv(next((vision_data["artifacts"] / "runs" / "vision_test_resnet" / "fold0"
                             / "logs").rglob("metrics.csv")))
    assert {"val/pauc", "val/auc", "val/loss", "train/loss"} <= set(logs.columns)


def test_run_image_only_fusion_off(vision_data: dict[str, Path], tmp_path: Path):
    art = _copy_artifacts(vision_data, tmp_path / "art")
    run(_cfg(vision_data, art, fusion=False, folds=[1], name="nofuse"))
    folds = pl.read_parquet(folds_path(art))
    _check_outputs(art, "vision_nofuse", folds, test=True)
    # image-only mode: HDF5 + labels CSV, own patient-grouped folds, no test predictions
    cfg = _cfg(vision_data, tmp_path / "img", fusion=False, folds=[0], n_folds=3, name="io",
               images_path=str(vision_data["data"] / "train-image.hdf5"),
               labels_path=str(vision_data["labels"]), data_dir="/nonexistent")
    out = run(cfg)
    img_folds = pl.read_parquet(tmp_path / "img" / "folds_images.parquet")
    assert img_folds.height == N_TRAIN and img_folds["patient_id"].null_count() == 0
    _check_outputs(tmp_path / "img", "vision_io", img_folds, test=False)
    assert "test_path" not in out
    with pytest.raises(ValueError, match="fusion=false"):
        run(replace(cfg, fusion=True))


class _InterruptError(RuntimeError):
    pass


class _StopAtEpoch1(pl_.Callback):
    def on_train_epoch_start(self, trainer: pl_.Trainer, pl_module: pl_.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise _InterruptError("simulated crash after epoch 1")


def test_interrupted_run_resumes_from_last_ckpt(vision_data: dict[str, Path], tmp_path: Path):
    art = _copy_artifacts(vision_data, tmp_path / "art")
    cfg = _cfg(vision_data, art, fusion=False, folds=[2], epochs=2, name="res",
               max_train_batches=2)
    with pytest.raises(_InterruptError):
        run(cfg, callbacks=[_StopAtEpoch1()])
    last = art / "runs" / "vision_res" / "fold2" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2
    out = run(cfg)
    assert out["folds"]["2"]["resumed_from_epoch"] == 1
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    again = run(cfg)  # finished fold: predictions reused, nothing retrained
    assert again["folds"]["2"] == out["folds"]["2"]


def test_pretrained_without_local_file_fails_fast(vision_data: dict[str, Path], tmp_path: Path):
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="pretrained=true.*pretrained_path"):
        run(_cfg(vision_data, tmp_path, pretrained=True))
    with pytest.raises(FileNotFoundError, match="no local weights"):
        run(_cfg(vision_data, tmp_path, pretrained=True, pretrained_path=str(tmp_path)))
    with pytest.raises(ValueError, match="not a timm model"):
        run(_cfg(vision_data, tmp_path, model_name="resnet_nope"))
    assert time.perf_counter() - t0 < 5


def test_pretrained_from_local_file(tmp_path: Path):
    src = create_backbone("test_resnet")
    torch.save(src.state_dict(), tmp_path / "test_resnet.pth")
    for where in (tmp_path / "test_resnet.pth", tmp_path):
        dst = create_backbone("test_resnet", pretrained=True, pretrained_path=str(where))
        for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True):
            assert torch.equal(a, b)


def test_fusion_features(vision_data: dict[str, Path], tmp_path: Path):
    raw = score_features(np.array([0.5, 0.1, 0.3]), np.array(["a", "a", "b"]))
    np.testing.assert_allclose(raw[:, 0], np.log([1.0, 1 / 9, 3 / 7]), atol=1e-5)
    np.testing.assert_allclose(raw[:, 1], [0.5 / 0.3, 0.1 / 0.3, 1.0], atol=1e-4)
    art = _copy_artifacts(vision_data, tmp_path)
    folds = pl.read_parquet(folds_path(art))
    table, _, stats = add_fusion(folds, None, art, "lgbm")
    feats = table.select("tab_logit", "tab_patient_ratio").to_numpy()
    np.testing.assert_allclose(feats.mean(0), 0, atol=1e-5)
    pred = table.join(pl.read_parquet(oof_path(art, "lgbm")), on="isic_id",
                      maintain_order="left")["pred"].to_numpy()
    assert (np.diff(table["tab_logit"].to_numpy()[np.argsort(pred)]) >= 0).all()  # aligned rows
    stale = pl.read_parquet(oof_path(art, "lgbm")).with_columns((pl.col("fold") + 1) % 3)
    write_parquet(stale, oof_path(art, "lgbm"))
    with pytest.raises(DataError, match="other folds"):
        add_fusion(folds, None, art, "lgbm")
    with pytest.raises(FileNotFoundError, match="fusion=false"):
        add_fusion(folds, None, art, "xgb")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_untrained_fusion_model_ranks_like_the_tabular_score(seed: int):
    """Before any step, the fused output is monotone in the tabular logit, whatever the init."""
    from isicstack.vision.model import ImageClassifier

    torch.manual_seed(seed)
    model = ImageClassifier("test_resnet", n_tab=2).eval()
    z = torch.linspace(-3, 3, 7)
    tab = torch.stack([z, torch.randn(7)], dim=1)
    with torch.no_grad():
        out = model(torch.randn(7, 3, 32, 32), tab)
    assert torch.all(out[1:] > out[:-1])


def test_cli_train_image_smoke(vision_data: dict[str, Path], tmp_path: Path):
    from isicstack.pipelines.cli import main

    art = _copy_artifacts(vision_data, tmp_path)
    rc = main(["train-image", "--profile", "smoke", f"data_dir={vision_data['data']}",
               f"artifacts={art}", "folds=[0]", "accelerator=cpu"])
    assert rc == 0 and oof_path(art, "vision_test_resnet").is_file()


@pytest.mark.slow
def test_learns_visible_label(vision_data: dict[str, Path], tmp_path: Path):
    art = _copy_artifacts(vision_data, tmp_path)
    out = run(_cfg(vision_data, art, fusion=False, epochs=6, lr=0.01, name="learn"))
    assert out["oof"]["pauc"] > 0.15


@pytest.mark.parametrize("profile", ["default", "smoke", "full", "real_dev"])
def test_profiles_resolve(profile: str):
    cfg = load_config(ImageConfig, "image", profile, ["epochs=1"])
    assert cfg.epochs == 1 and cfg.model_name
    assert (cfg.images_path != "") == (profile == "real_dev")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_channels_last(vision_data: dict[str, Path], tmp_path: Path):
    art = _copy_artifacts(vision_data, tmp_path)
    out = run(_cfg(vision_data, art, accelerator="auto", folds=[0]))
    assert out["precision"] in ("bf16-mixed", "16-mixed")
