"""The image stage under Lightning DDP on CPU (2 processes, gloo): the same code path as
multi-GPU, tested in CI.

Lightning's ``ddp`` strategy starts the other ranks by running ``sys.argv`` again: under pytest
that would start pytest twice, so the end-to-end test runs ``isic train-image ...
runtime.devices=2 runtime.strategy=ddp`` as a subprocess, the way a user starts it
(``ddp_spawn`` would pickle the Trainer and DataModule into fresh interpreters per ``fit`` and
per ``predict``, and return no predictions from the other ranks). The units check what DDP
relies on: the sampler's sharding, the evaluation samplers' padding and the gathering that
drops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from torch.utils.data import DistributedSampler

from isicstack.data import layout
from isicstack.data.io import write_parquet
from isicstack.data.layout import folds_path, oof_path
from isicstack.ledger.result import read_result
from isicstack.settings.keys import with_keys
from isicstack.vision.config import ImageConfig
from isicstack.vision.datamodule import FoldDataModule
from isicstack.vision.distributed import eval_sampler, gather_rows
from isicstack.vision.fold_table import TrainInputs
from isicstack.vision.prepare import Sources
from isicstack.vision.sampler import BalancedEpochSampler


def _steps(s: BalancedEpochSampler) -> list[np.ndarray]:
    idx = np.array(list(s))
    return [idx[i:i + s.batch_size] for i in range(0, idx.size, s.batch_size)]


@pytest.mark.parametrize("ratio", [5, 4])  # 54 and 45 a pass: even, and one left out
def test_sampler_shards_disjoint_with_the_configured_positive_share(ratio: int):
    y = np.array([1] * 9 + [0] * 95)
    batch, world = 8, 2
    for epoch in range(3):
        one = BalancedEpochSampler(y, neg_ratio=ratio, seed=4)
        one.set_epoch(epoch)
        order = one.indices()  # the pass a one-process run draws
        ranks = []
        for rank in range(world):
            s = BalancedEpochSampler(y, neg_ratio=ratio, seed=4, num_replicas=world, rank=rank,
                                     batch_size=batch)
            s.set_epoch(epoch)
            assert len(list(s)) == len(s) == order.size // world
            ranks.append(_steps(s))
        assert len(ranks[0]) == len(ranks[1])
        for step, (a, b) in enumerate(zip(*ranks, strict=True)):
            assert not set(a) & set(b)  # each rank sees other crops
            # the step's global batch is the slice of the one-process order at that step
            assert set(a) | set(b) == set(order[step * world * batch:][:a.size + b.size])
            assert abs(int(y[a].sum()) - int(y[b].sum())) <= 1  # positives dealt evenly
        seen = np.concatenate([np.concatenate(r) for r in ranks])
        assert np.unique(seen).size == seen.size == order.size // world * world
        if order.size % world == 0:  # the pass keeps the configured share exactly
            assert y[seen].sum() == 9 and (y[seen] == 0).sum() == 9 * ratio
    with pytest.raises(ValueError, match="rank 2 of 2"):
        BalancedEpochSampler(y, 5, num_replicas=2, rank=2)


def test_sampler_one_replica_is_the_plain_order():
    y = np.array([1] * 7 + [0] * 60)
    plain, one = BalancedEpochSampler(y, 3, seed=2), BalancedEpochSampler(y, 3, 2, 1, 0, 16)
    for e in range(3):
        plain.set_epoch(e)
        one.set_epoch(e)
        assert list(plain) == list(one) == plain.indices().tolist()
        assert len(plain) == len(one) == 28


def test_gather_rows_keeps_each_row_once():
    out = [{"index": torch.tensor([0, 1, 2]), "pred": torch.tensor([0.1, 0.2, 0.3])},
           {"index": torch.tensor([3, 0]), "pred": torch.tensor([0.4, 0.9])}]  # 0 again: padding
    res = gather_rows(out, 4)
    assert res["pred"].dtype == np.float64
    assert np.allclose(res["pred"], [0.1, 0.2, 0.3, 0.4])  # the first prediction of row 0
    with pytest.raises(RuntimeError, match="covered 4 of 5 rows"):
        gather_rows(out, 5)


def test_fold_loaders_take_this_ranks_share():
    n = 41
    src = SimpleNamespace(image=lambda i: np.zeros((4, 4, 3), np.uint8), keys=list)
    table = pl.DataFrame({"isic_id": [f"ISIC_{i}" for i in range(n)],
                          "target": (np.arange(n) % 5 == 0) * 1.0, "fold": np.arange(n) % 2})
    cfg = with_keys(ImageConfig(), {"model.image_size": 16, "data.batch_size": 4,
                                    "data.neg_ratio": 2})
    dm = FoldDataModule(cfg, TrainInputs(table, Path("unused.hdf5")),
                        Sources(src, None, "memory", bad_ids=["ISIC_3"]), fold=0)
    assert 3 not in dm.train_rows and dm.train_rows.size == 19  # a bad crop is not trained on
    assert eval_sampler(dm._dataset(dm.valid_rows, False), None) is None  # one process
    assert not isinstance(dm.predict_dataloader().sampler, DistributedSampler)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    train = dm.train_dataloader().sampler
    assert isinstance(train, BalancedEpochSampler)
    assert (train.num_replicas, train.rank, train.batch_size) == (2, 1, 4)
    pred = dm.predict_dataloader().sampler
    assert isinstance(pred, DistributedSampler) and (pred.num_replicas, pred.rank) == (2, 1)
    assert len(pred) == 11  # 21 rows: rank 1 gets 10 + one padding repeat
    shares = [list(DistributedSampler(range(21), 2, r, shuffle=False)) for r in (0, 1)]
    assert sorted(set(shares[0] + shares[1])) == list(range(21))


def _odd_folds(src: Path, dst: Path) -> pl.DataFrame:
    """``src``'s folds with one row dropped from each even-sized fold: every fold odd, so the
    second rank's share is padded with a repeat."""
    folds = pl.read_parquet(folds_path(src))
    even = folds.group_by("fold").len().filter(pl.col("len") % 2 == 0)["fold"].to_list()
    drop = [folds.filter(pl.col("fold") == f)["isic_id"][0] for f in even]
    folds = folds.filter(~pl.col("isic_id").is_in(drop))
    write_parquet(folds, folds_path(dst))
    return folds


def test_train_image_ddp_two_cpu_processes(mini_isic: Path, mini_artifacts: Path,
                                           tmp_path: Path):
    art, data = tmp_path / "artifacts", tmp_path / "data"
    data.mkdir()
    folds = _odd_folds(mini_artifacts, art)
    for name in ("train-image.hdf5", "test-image.hdf5"):
        (data / name).symlink_to(mini_isic / name)
    test = pl.read_csv(mini_isic / "test-metadata.csv", infer_schema=False).head(119)  # odd
    test.write_csv(data / "test-metadata.csv")
    rng = np.random.default_rng(0)  # tabular scores to fuse, made on the same folds
    write_parquet(folds.select("isic_id", "fold").with_columns(
        pred=pl.Series(rng.uniform(0.01, 0.99, folds.height))), oof_path(art, "lgbm"))
    write_parquet(test.select("isic_id").with_columns(
        pred=pl.Series(rng.uniform(0.01, 0.99, test.height))), layout.test_pred_path(art, "lgbm"))
    cmd = [sys.executable, "-m", "isicstack.pipelines.cli", "train-image", "--profile", "smoke",
           f"data_dir={data}", f"artifacts={art}", "name=ddp", "runtime.devices=2",
           "runtime.strategy=ddp", "runtime.accelerator=cpu", "runtime.cpu_threads=1",
           "optim.val_every=2"]
    env = {**os.environ, "ISIC_TRACKING": "none", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # a second process really trained
    rdir = art / "runs" / "vision_ddp"
    details = read_result(rdir).details
    assert details["world_size"] == 2
    for k in folds["fold"].unique().to_list():
        fold = details["fold_records"][str(k)]
        assert fold["world_size"] == 2 and fold["steps"] == 4
        assert fold["n_valid"] == folds.filter(pl.col("fold") == k).height
        assert sorted(p.name for p in (rdir / f"fold{k}").glob("*.ckpt")) == ["last.ckpt"]
        assert log.count(f"fold {k}: OOF pAUC") == 1  # written once, by rank 0
    assert log.count("vision_ddp: OOF pAUC") == 1
    for name in ("vision_ddp", "vision_ddp_image_part"):
        oof = pl.read_parquet(oof_path(art, name))
        assert oof.height == folds.height and oof["isic_id"].n_unique() == folds.height
        joined = oof.join(folds, on="isic_id", how="inner")
        assert joined.height == folds.height and (joined["fold"] == joined["fold_right"]).all()
        assert np.isfinite(oof["pred"].to_numpy()).all() and oof["pred"].is_between(0, 1).all()
        tst = pl.read_parquet(layout.test_pred_path(art, name))
        assert tst.height == tst["isic_id"].n_unique() == test.height
        assert np.isfinite(tst["pred"].to_numpy()).all()
