"""Shared data of the image-stage tests: a 60-crop HDF5 (32 px, positives carry a bright disc),
a 9-crop test set, folds, tabular scores and a labels CSV; a tiny-config factory.

Each image test module wraps :func:`make_vision_data` in a module-scoped fixture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from isicstack.data import layout
from isicstack.data.crops import encode_jpeg, write_crops
from isicstack.data.folds import make_folds
from isicstack.data.io import write_parquet
from isicstack.data.layout import folds_path, oof_path
from isicstack.data.schema import columns_for
from isicstack.settings.keys import with_keys
from isicstack.vision.config import ImageConfig
from isicstack.vision.model import ImageClassifier, build_model

N_TRAIN, N_TEST, SIZE = 60, 9, 32


def crop(rng: np.random.Generator, positive: bool, size: int = SIZE) -> np.ndarray:
    img = rng.integers(60, 140, (size, size, 3)).astype(np.uint8)
    if positive:  # label visible in the image: a bright disc in the centre
        yy, xx = np.mgrid[:size, :size]
        img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = (250, 40, 40)
    return img


def make_vision_data(root: Path) -> dict[str, Path]:
    """data_dir (HDF5s + test-metadata.csv), artifacts (folds + tabular preds), labels CSV."""
    data, art = root / "data", root / "artifacts"
    data.mkdir()
    rng = np.random.default_rng(0)
    ids = [f"ISIC_{i:07d}" for i in range(N_TRAIN)]
    target = (np.arange(N_TRAIN) % 4 == 0).astype(np.int8)  # 15 positives
    patient = [f"IP_{i % 20:03d}" for i in range(N_TRAIN)]
    write_crops(data / "train-image.hdf5",
                [(i, encode_jpeg(crop(rng, bool(t)))) for i, t in zip(ids, target, strict=True)])
    test_ids = [f"ISIC_{9000000 + i}" for i in range(N_TEST)]
    write_crops(data / "test-image.hdf5",
                [(i, encode_jpeg(crop(rng, k % 3 == 0))) for k, i in enumerate(test_ids)])
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


def image_cfg(d: dict[str, Path], artifacts: Path | None = None,
              keys: dict[str, object] | None = None, **top: object) -> ImageConfig:
    """A tiny CPU config; ``keys``: dotted keys (``{"optim.steps": 6}``), ``top``: top-level
    keys (``fusion=False``)."""
    base = ImageConfig(data_dir=str(d["data"]), artifacts=str(artifacts or d["artifacts"]),
                       seed=3)
    return with_keys(base, {"model.name": "test_resnet", "model.image_size": SIZE,
                            "data.batch_size": 8, "optim.steps": 3, "data.neg_ratio": 2,
                            "data.num_workers": 0, "runtime.accelerator": "cpu",
                            "runtime.cpu_threads": 1, **(keys or {}), **top})


def copy_artifacts(d: dict[str, Path], dst: Path) -> Path:
    for f in ("folds.parquet", "oof/lgbm.parquet", "test/lgbm.parquet"):
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        (dst / f).write_bytes((d["artifacts"] / f).read_bytes())
    return dst


def tiny_model(n_tab: int = 0) -> ImageClassifier:
    """The image model as every caller builds it (``build_model``), on timm's ``test_resnet``
    (random init)."""
    cfg = with_keys(ImageConfig(), {"model.name": "test_resnet"})
    return build_model(cfg, n_tab, channels_last=False, pretrained=False)
