"""The image stage's fold models rebuilt for offline inference (kept apart: it imports torch).

Each fold's LightningModule is rebuilt from the run's ``config.yaml`` and loads the final
weights training predicted with (``fold<k>/last.ckpt``) as a plain state dict (``weights_only``:
no pickled code runs). One pass over the crops feeds every fold model, so each
JPEG is decoded once; fusion inputs are the tabular test scores standardised with the train-OOF
statistics saved in ``fusion.json``, exactly as ``vision.fold_table.add_fusion`` did for the test
rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from isicstack.data.layout import IMAGE_PART_SUFFIX as PART_SUFFIX
from isicstack.data.layout import read_json, require_files, run_dir
from isicstack.ledger.result import METRICS, trained_folds
from isicstack.settings.keys import with_keys
from isicstack.settings.layers import read_run_config
from isicstack.vision.config import ImageConfig
from isicstack.vision.data import CropDataset, eval_transform, make_loader, open_source
from isicstack.vision.fold_table import FUSION_FILE, TAB_COLS, score_features, standardise
from isicstack.vision.model import IMAGE_PART, ImageClassifier, build_model
from isicstack.vision.train import resolve_runtime

log = logging.getLogger(__name__)

AUTOCAST = {"bf16": torch.bfloat16, "16": torch.float16}


def checkpoint_paths(rdir: Path, folds: list[int]) -> list[Path]:
    """The checkpoint each fold's test predictions came from in training."""
    return [rdir / f"fold{k}" / "last.ckpt" for k in folds]


def load_net(cfg: ImageConfig, path: Path, n_tab: int, channels_last: bool,
             device: torch.device) -> ImageClassifier:
    """The fold's module from its config (no pretrained file needed) and checkpoint weights."""
    net = build_model(cfg, n_tab, channels_last, pretrained=False)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{path}: does not fit {cfg.model.name!r} with {n_tab} fusion "
                         f"input(s): {str(err)[:300]}") from err
    return net.eval().to(device)


class ImagePredictor:
    """Every trained fold of an image run, averaged as the training stage averaged them."""

    def __init__(self, artifacts: str | os.PathLike[str], name: str, images: Path | None,
                 accelerator: str = "auto", batch_size: int = 256, num_workers: int = 2,
                 cpu_threads: int = 0) -> None:
        # <run>_image_part: a fused run's image term alone (a second-pass GBDT feature)
        part = name.endswith(PART_SUFFIX) and not run_dir(artifacts, name).is_dir()
        self.output = IMAGE_PART if part else "pred"
        rdir = run_dir(artifacts, name.removesuffix(PART_SUFFIX) if part else name)
        self.name = name
        self.cfg: ImageConfig = read_run_config(ImageConfig, rdir)
        self.images = images  # an HDF5 or a folder of JPEGs, opened when first scored
        self._source: Any = None
        rt = resolve_runtime(with_keys(self.cfg, {"runtime.accelerator": accelerator,
                                                  "runtime.cpu_threads": cpu_threads,
                                                  "data.num_workers": num_workers}))
        self.device = torch.device("cuda" if rt["on_gpu"] else "cpu")
        if not rt["on_gpu"]:
            torch.set_num_threads(rt["cpu_threads"])
        prec = str(rt["precision"]).split("-")[0]
        self.autocast = AUTOCAST.get(prec)  # as in training (bf16 also on a CPU with it)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.last: tuple[pl.DataFrame | None, dict[str, np.ndarray]] = (None, {})
        self.fusion: dict[str, Any] | None = None
        self.deps: list[str] = []
        if self.cfg.fusion and not self.cfg.images_path:
            self.fusion = read_json(rdir / FUSION_FILE, "fusion standardisation statistics "
                                    "(written by `isic train-image` with fusion=true)")
            # the image term reads no tabular score: its fusion inputs are left at zero
            self.deps = [] if part else [self.fusion["tabular_name"]]
        if part and self.fusion is None:
            raise ValueError(f"{name}: {rdir.name} is not a fused image run, so it has no image "
                             "term apart from its output; use its own name")
        paths = checkpoint_paths(rdir, trained_folds(rdir))
        require_files(paths, f"checkpoint of image run {name!r}")
        self.files = [rdir / "config.yaml", rdir / METRICS, *paths]
        if self.fusion is not None:
            self.files.append(rdir / FUSION_FILE)
        self._paths, self._channels_last = paths, rt["channels_last"]
        self._nets: list[torch.nn.Module] | None = None

    @property
    def nets(self) -> list[torch.nn.Module]:
        """The fold networks, loaded on first use: packaging needs only ``files``, and a
        predictor replaced by another's pass (``ImagePartView``) never loads its own."""
        if self._nets is None:
            n_tab = len(TAB_COLS) if self.fusion else 0
            self._nets = [load_net(self.cfg, p, n_tab, self._channels_last, self.device)
                          for p in self._paths]
            log.info("%s: %d fold model(s) %s %dpx on %s%s", self.name, len(self._nets),
                     self.cfg.model.name, self.cfg.model.image_size, self.device,
                     f" ({self.autocast})" if self.autocast else "")
        return self._nets

    @property
    def source(self) -> Any:
        """The crops to score, decoded as in training (opened lazily: packaging never reads).

        ``images`` may also be an image source object itself (``keys()``/``image(id)``, e.g.
        the web app's uploaded crop), used as it is.
        """
        if self._source is None:
            if self.images is None:
                raise ValueError(f"{self.name}: no images to score (ImagePredictor(images=None))")
            self._source = (self.images if hasattr(self.images, "image")
                            else open_source(self.images, self.cfg.data.color_constancy))
        return self._source

    def fusion_inputs(self, rows: pl.DataFrame, preds: dict[str, np.ndarray]) -> np.ndarray | None:
        """Standardised tabular score features of ``rows`` (None for an image-only model)."""
        if self.fusion is None:
            return None
        if self.output == IMAGE_PART:  # the image term alone: the tabular term is not used
            return np.zeros((rows.height, len(TAB_COLS)), np.float32)
        raw = score_features(preds[self.deps[0]], rows["patient_id"].to_numpy())
        return standardise(raw, np.asarray(self.fusion["mean"]), np.asarray(self.fusion["std"]))

    def predict(self, rows: pl.DataFrame, preds: dict[str, np.ndarray]) -> np.ndarray:
        ds = CropDataset(self.source, rows["isic_id"].to_list(),
                         eval_transform(self.cfg.model.image_size),
                         tab=self.fusion_inputs(rows, preds))
        loader = make_loader(ds, self.batch_size, self.num_workers)
        keys = ["pred", IMAGE_PART] if self.fusion is not None else ["pred"]
        outs = {k: np.full(len(ds), np.nan) for k in keys}
        amp = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
               else contextlib.nullcontext())
        with torch.inference_mode(), amp:
            for i, batch in enumerate(loader):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                idx = batch["index"].cpu().numpy()
                steps = [net.predict_step(batch, i) for net in self.nets]
                for k in keys:
                    outs[k][idx] = sum(o[k].numpy().astype(np.float64)
                                       for o in steps) / len(self.nets)
        out = outs[self.output]
        if np.isnan(out).any():
            raise RuntimeError(f"{self.name}: {int(np.isnan(out).sum())} row(s) not scored")
        self.last = (rows, outs)  # a fused run's image term, for its ImagePartView
        return out


class ImagePartView:
    """``<run>_image_part`` read off the fused run's own pass over the crops: the image term
    does not depend on the tabular inputs, so scoring the crops a second time (with zero
    tabular inputs, as a standalone ``ImagePredictor`` of the part does) gives the same values
    at the cost of another pass of every fold's CNN."""

    def __init__(self, run: ImagePredictor) -> None:
        if run.fusion is None:
            raise ValueError(f"{run.name} is not a fused image run: it has no image term apart "
                             "from its output")
        self.run, self.name = run, run.name + PART_SUFFIX
        self.deps, self.files = [run.name], run.files  # scored after the run, from its pass

    def predict(self, rows: pl.DataFrame, preds: dict[str, np.ndarray]) -> np.ndarray:
        scored, outs = self.run.last
        if scored is not rows:
            raise RuntimeError(f"{self.name}: {self.run.name} has not scored this batch")
        return outs[IMAGE_PART]
