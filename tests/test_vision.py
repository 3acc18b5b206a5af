"""Image stage units: sampler, v2 transforms, sources, worker safety, pretrained loading, fusion.

Runs on the 60-crop HDF5 of ``vision_fixtures`` with timm's 0.4M-parameter ``test_resnet``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import pytorch_lightning as lightning
import torch
from vision_fixtures import copy_artifacts, crop, image_cfg, make_vision_data

from isicstack.data.crops import BadImageError, CropStore
from isicstack.data.io import DataError, write_parquet
from isicstack.data.layout import folds_path, oof_path
from isicstack.settings.keys import with_keys
from isicstack.settings.layers import load_config
from isicstack.vision.backbone import create_backbone
from isicstack.vision.config import ImageConfig
from isicstack.vision.data import (
    CropDataset,
    FolderSource,
    HDF5Source,
    eval_transform,
    make_loader,
    open_source,
    train_transform,
)
from isicstack.vision.fold_table import add_fusion, score_features
from isicstack.vision.sampler import BalancedEpochSampler
from isicstack.vision.train import run


@pytest.fixture(scope="module")
def vision_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_vision_data(tmp_path_factory.mktemp("vision"))


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
    img = crop(np.random.default_rng(1), True, size=45)[:, :40]  # non-square crop
    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    ev = eval_transform(24)
    a, b = ev(x), ev(x)
    assert a.shape == (3, 24, 24) and a.dtype == torch.float32 and torch.equal(a, b)
    for augment in ("none", "flips", "strong"):
        tr = train_transform(24, augment)
        torch.manual_seed(0)
        t1 = tr(x)
        torch.manual_seed(0)
        assert t1.shape == (3, 24, 24) and t1.dtype == torch.float32 and torch.equal(t1, tr(x))
        assert torch.isfinite(t1).all()
    flips = {tuple(train_transform(24, "flips")(x)[0, 0, :3].tolist()) for _ in range(40)}
    assert len(flips) > 1  # the flips do flip
    with pytest.raises(ValueError, match="augment"):
        train_transform(24, "wild")


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
    src = HDF5Source(vision_data["data"] / "train-image.hdf5")
    ds = CropDataset(src, ids, eval_transform(16), np.zeros(20), np.ones((20, 2), np.float32))
    assert src.store._file is None
    assert sorted(_read_all(ds, ctx)) == list(range(20))
    assert src.store._file is None, "the HDF5 file was opened in the parent process"


def test_pretrained_unavailable_fails_fast(vision_data: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hub_cache"))  # nothing cached
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="not in the local timm/Hugging Face cache"):
        run(image_cfg(vision_data, tmp_path, {"model.name": "resnet18", "model.pretrained": True}))
    with pytest.raises(FileNotFoundError, match="no local weights"):
        run(image_cfg(vision_data, tmp_path, {"model.pretrained": True,
                                              "model.pretrained_path": str(tmp_path)}))
    with pytest.raises(ValueError, match="not a timm model"):
        run(image_cfg(vision_data, tmp_path, {"model.name": "resnet_nope"}))
    assert time.perf_counter() - t0 < 30  # at once: no hub retries (generous for a busy box)


def test_pretrained_through_timm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A local file or folder goes through timm's own loader (pretrained_cfg_overlay file=);
    weights in timm's hub cache load with pretrained=true and no path, offline."""
    src = create_backbone("test_resnet")
    torch.save(src.state_dict(), tmp_path / "test_resnet.pth")
    for where in (tmp_path / "test_resnet.pth", tmp_path):
        dst = create_backbone("test_resnet", pretrained=True, pretrained_path=str(where))
        for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not fit"):
        create_backbone("test_resnet", pretrained=True, pretrained_path=str(tmp_path / "bad.pth"))
    # a populated hub cache, as `timm.create_model(pretrained=True)` leaves it after a download
    import timm
    from safetensors.torch import save_file

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    repo = timm.models.get_pretrained_cfg("test_resnet").hf_hub_id
    snap = hub / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (hub / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (hub / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()},
              str(snap / "model.safetensors"))
    dst = create_backbone("test_resnet", pretrained=True)
    for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_sources_name_bad_crops(vision_data: dict[str, Path], tmp_path: Path):
    """HDF5 and JPEG-folder sources decode the same crop alike; bad crops name id and file."""
    h5 = open_source(vision_data["data"] / "train-image.hdf5")
    assert isinstance(h5, HDF5Source)
    first = h5.keys()[0]
    folder = tmp_path / "jpegs"
    folder.mkdir()
    (folder / f"{first}.jpg").write_bytes(h5.store.read_bytes(first))
    (folder / "ISIC_BROKEN.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    src = open_source(folder)
    assert isinstance(src, FolderSource) and sorted(src.keys()) == sorted([first, "ISIC_BROKEN"])
    assert np.array_equal(src.image(first), h5.image(first))
    with pytest.raises(BadImageError, match=r"ISIC_BROKEN\.jpg.*'ISIC_BROKEN'"):
        src.image("ISIC_BROKEN")
    with pytest.raises(BadImageError, match="ISIC_NOPE"):
        src.image("ISIC_NOPE")
    with pytest.raises(BadImageError, match=r"train-image.hdf5.*ISIC_NOPE"):
        h5.image("ISIC_NOPE")
    with pytest.raises(FileNotFoundError, match="no .jpg"):
        open_source(tmp_path)


def test_fusion_features(vision_data: dict[str, Path], tmp_path: Path):
    raw = score_features(np.array([0.5, 0.1, 0.3]), np.array(["a", "a", "b"]))
    np.testing.assert_allclose(raw[:, 0], np.log([1.0, 1 / 9, 3 / 7]), atol=1e-5)
    np.testing.assert_allclose(raw[:, 1], [0.5 / 0.3, 0.1 / 0.3, 1.0], atol=1e-4)
    art = copy_artifacts(vision_data, tmp_path)
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


@pytest.mark.parametrize("profile", ["default", "smoke", "full", "real_dev", "gpu"])
def test_profiles_resolve(profile: str):
    cfg = load_config(ImageConfig, "image", profile, ["optim.steps=7"])
    assert cfg.optim.steps == 7 and cfg.model.name
    assert (cfg.images_path != "") == (profile in ("real_dev", "gpu"))


class _MemoryFormat(lightning.Callback):
    """Records whether the backbone's conv weights (at the start of training) and every input
    it saw were in channels_last memory format (only tensors where the formats differ)."""

    def __init__(self) -> None:
        self.weights: list[bool] = []
        self.inputs: list[bool] = []

    def on_train_start(self, trainer: lightning.Trainer, pl_module: object) -> None:
        backbone = pl_module.backbone  # type: ignore[attr-defined]
        self.weights = [p.is_contiguous(memory_format=torch.channels_last)
                        for p in backbone.parameters()
                        if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]
        backbone.register_forward_pre_hook(lambda _m, args: self.inputs.append(
            args[0].is_contiguous(memory_format=torch.channels_last)))


def test_channels_last_resolution_and_memory_format(vision_data: dict[str, Path],
                                                    tmp_path: Path):
    """CPU: `auto` means channels_last only with bf16; forced on, the weights and every input
    of the trained backbone are channels_last; off, none are."""
    from isicstack.vision.train import resolve_runtime

    cpu = image_cfg(vision_data, None, {"runtime.precision": "32-true"})
    assert resolve_runtime(cpu)["channels_last"] is False
    assert resolve_runtime(with_keys(cpu, {"runtime.precision": "bf16-mixed"}))["channels_last"]
    assert resolve_runtime(with_keys(cpu, {"runtime.channels_last": True}))["channels_last"]
    art = copy_artifacts(vision_data, tmp_path)
    for on in (True, False):
        probe = _MemoryFormat()
        run(with_keys(cpu, {"artifacts": str(art), "fusion": False, "folds": [0],
                            "optim.steps": 2, "name": f"cl_{on}",
                            "runtime.channels_last": on}), callbacks=[probe])
        assert probe.weights and probe.inputs
        assert set(probe.weights) == {on} and set(probe.inputs) == {on}


def test_cpu_threads_follow_the_cores_this_process_may_use(vision_data: dict[str, Path],
                                                           monkeypatch):
    """`cpu_threads=0` sizes torch's threads by the affinity mask (taskset, a cpuset), not by
    the machine's core count: 2 threads on 1 allowed core wait on each other."""
    import os

    from isicstack.conditions import usable_cores
    from isicstack.vision.train import resolve_runtime

    cpu = image_cfg(vision_data, None, {"runtime.precision": "32-true", "runtime.cpu_threads": 0})
    monkeypatch.delenv("ISIC_CORES", raising=False)  # make test's workers set their share
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert usable_cores() == 1 and resolve_runtime(cpu)["cpu_threads"] == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert resolve_runtime(cpu)["cpu_threads"] == 4
    assert resolve_runtime(with_keys(cpu, {"data.num_workers": 1}))["cpu_threads"] == 3
    monkeypatch.setenv("ISIC_CORES", "2")  # a cap below the mask (processes sharing a box)
    assert usable_cores() == 2 and resolve_runtime(cpu)["cpu_threads"] == 2
    monkeypatch.setenv("ISIC_CORES", "two")
    with pytest.raises(ValueError, match="ISIC_CORES='two'"):
        usable_cores()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_channels_last(vision_data: dict[str, Path], tmp_path: Path):
    """On a GPU, `auto` resolves to mixed precision and channels_last, and the model really
    trains in that memory format (weights and inputs of the backbone)."""
    from isicstack.vision.train import resolve_runtime

    art = copy_artifacts(vision_data, tmp_path)
    cfg = image_cfg(vision_data, art, {"runtime.accelerator": "auto"}, folds=[0])
    rt = resolve_runtime(cfg)
    assert rt["on_gpu"] and rt["channels_last"] and rt["precision"] in ("bf16-mixed", "16-mixed")
    probe = _MemoryFormat()
    [out] = run(cfg, callbacks=[probe])
    assert out.details["precision"] == rt["precision"]
    assert probe.weights and all(probe.weights)
    assert probe.inputs and all(probe.inputs)
