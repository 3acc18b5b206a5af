"""The image model: any timm backbone (:mod:`isicstack.vision.backbone`), optionally fused
with tabular OOF score features; ``build_model`` is the one place a network is built, for
training, prediction, Grad-CAM and the app.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytorch_lightning as lightning
import torch
from torch import nn

from isicstack.data.metric import fold_scores
from isicstack.vision.backbone import create_backbone
from isicstack.vision.config import ImageConfig

log = logging.getLogger(__name__)

IMAGE_PART = "image_part"  # predict_step key of a fused image term (data.layout.image_part_name)


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup from ~0 to 1 over ``warmup`` steps, then cosine to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class ImageClassifier(lightning.LightningModule):
    """Backbone embedding -> linear image logit (+ a linear term in the tabular score features).

    The fused model's logit is ``image_logit + w . tab``: log-odds add, so it starts as the
    tabular ranking (image head at zero, ``w`` = the standardised tabular logit) or, initialised
    from an image-only run of the same folds, as the sum of both; a short run learns the mix.
    """

    def __init__(self, backbone: nn.Module, cfg: ImageConfig, n_tab: int,
                 channels_last: bool) -> None:
        """``backbone`` comes built (:func:`build_model`: training, prediction, Grad-CAM, the
        app), so its name and weights are read in one place; the rest is read from ``cfg``
        when used, never copied: the config's dataclass holds the one set of defaults."""
        super().__init__()
        if cfg.optim.schedule not in ("onecycle", "cosine"):
            raise ValueError(f"optim.schedule must be onecycle or cosine, "
                             f"got {cfg.optim.schedule!r}")
        self.cfg = cfg
        self.backbone = backbone
        # pooled output width (after a conv head such as MobileNetV3's, when there is one)
        dim = int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)
        self.n_tab = int(n_tab)
        self.head = nn.Sequential(nn.Dropout(cfg.model.drop_rate), nn.Linear(dim, 1))
        self.tab_skip: nn.Module | None = None
        if self.n_tab:
            # start as the standardised tabular logit (column 0) with the image part at zero: a
            # random init could give the tabular term a negative sign that a short CPU run never
            # corrects, inverting the tabular ranking on a whole fold (seen: fold AUC 0.22)
            self.tab_skip = nn.Linear(self.n_tab, 1)
            with torch.no_grad():
                self.tab_skip.weight.zero_()
                self.tab_skip.weight[0, 0] = 1.0
                self.tab_skip.bias.zero_()
                self.head[-1].weight.zero_()
                self.head[-1].bias.zero_()
        self.register_buffer("pos_weight", torch.tensor(float(cfg.optim.pos_weight)),
                             persistent=False)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self._val: list[tuple[torch.Tensor, ...]] = []

    def image_logit(self, image: torch.Tensor) -> torch.Tensor:
        """The image term of the logit (the whole logit of an image-only model)."""
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(image)).squeeze(1)

    def tab_logit(self, tab: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | float:
        """The tabular term of a fused model's logit (0 for an image-only model)."""
        if self.tab_skip is None:
            return 0.0
        if tab is None or tab.shape[-1] != self.n_tab:
            raise ValueError(f"fusion model expects {self.n_tab} tab features per row")
        return self.tab_skip(tab.to(dtype)).squeeze(1)

    def forward(self, image: torch.Tensor, tab: torch.Tensor | None = None) -> torch.Tensor:
        logit = self.image_logit(image)
        return logit + self.tab_logit(tab, logit.dtype)

    def init_from_image_only(self, state: dict[str, torch.Tensor]) -> None:
        """Backbone and image head from an image-only model of the same fold."""
        own = {k: v for k, v in state.items() if k.startswith(("backbone.", "head."))}
        missing, _ = self.load_state_dict(own, strict=False)
        lost = [k for k in missing if k.startswith(("backbone.", "head."))]
        if lost:
            raise ValueError(f"init_from: {len(lost)} weight(s) do not fit, e.g. {lost[:3]}")

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(
            logits.float(), target.float(), pos_weight=self.pos_weight)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self(batch["image"], batch["tab"]), batch["target"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch["target"].shape[0], sync_dist=self.trainer.world_size > 1)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch["image"], batch["tab"]).float()
        self._val.append((logits.detach(), batch["target"].detach(), batch["index"]))

    def on_validation_epoch_end(self) -> None:
        """Scores of the validation subset, gathered whole (pAUC is meaningless per batch)."""
        if not self._val:
            return
        logits = torch.cat([v[0] for v in self._val])
        target = torch.cat([v[1] for v in self._val])
        index = torch.cat([torch.as_tensor(v[2]).to(logits.device) for v in self._val])
        self._val = []
        if self.trainer.world_size > 1:  # every rank's share; padding repeats counted once
            logits, target, index = (self.all_gather(t).reshape(-1)
                                     for t in (logits, target, index))
            keep = torch.from_numpy(np.unique(index.cpu().numpy(), return_index=True)[1])
            logits, target = logits.cpu()[keep], target.cpu()[keep]
        z, y = logits.cpu().numpy(), target.cpu().numpy()
        loss = float(nn.functional.binary_cross_entropy_with_logits(
            torch.from_numpy(z), torch.from_numpy(y)))
        p = 1.0 / (1.0 + np.exp(-z))
        scored = fold_scores(y, p)  # None without both classes: not logged, never made up
        self.log_dict({"val/loss": loss, **{f"val/{k}": v for k, v in scored.items()
                                            if v is not None}}, prog_bar=True,
                      sync_dist=self.trainer.world_size > 1)  # the same on every rank

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """``pred``; a fused model also gives ``image_part``, the sigmoid of its image term
        alone: what the CNN adds to the table, a GBDT feature that repeats none of it."""
        flip = self.cfg.data.tta_flip
        views = [batch["image"]] + ([torch.flip(batch["image"], dims=[3])] if flip else [])
        img = torch.stack([self.image_logit(v).float() for v in views])  # (views, rows)
        out = {"index": batch["index"].cpu(),
               "pred": torch.sigmoid(img + self.tab_logit(batch["tab"], img.dtype)).mean(0).cpu()}
        if self.tab_skip is not None:
            out[IMAGE_PART] = torch.sigmoid(img).mean(0).cpu()
        return out

    def configure_optimizers(self) -> Any:
        oc = self.cfg.optim
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, p in self.named_parameters():  # none is frozen
            is_backbone = name.startswith("backbone.")
            no_decay = p.ndim <= 1  # biases and norm scales: no weight decay
            groups.setdefault((is_backbone, no_decay), []).append(p)
        params = [
            {"params": ps, "lr": oc.lr * (oc.backbone_lr_mult if bb else 1.0),
             "weight_decay": 0.0 if nd else oc.weight_decay}
            for (bb, nd), ps in groups.items()
        ]
        opt = torch.optim.AdamW(params, lr=oc.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if oc.schedule == "onecycle" and total >= 2:  # random init: warm up, anneal to ~0
            sched: Any = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in params], total_steps=total,
                pct_start=min(max(oc.warmup_frac, 1.5 / total), 0.9), cycle_momentum=False)
        else:  # pretrained: short linear warmup, cosine decay
            warmup = int(oc.warmup_frac * total)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: cosine_with_warmup(s, total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_model(cfg: ImageConfig, n_tab: int, channels_last: bool,
                pretrained: bool = True) -> ImageClassifier:
    """The image stage's network from its config, for every caller: training (with the
    config's pretrained weights) and prediction, Grad-CAM and the app (``pretrained=False``:
    the weights come from a fold's checkpoint), so a new option is added once. The backbone is
    built first, then the head: the order the random initial weights are drawn in."""
    mc = cfg.model
    backbone = create_backbone(mc.name, mc.pretrained and pretrained,
                               mc.pretrained_path if pretrained else "")
    return ImageClassifier(backbone, cfg, n_tab, channels_last)
