"""The image model: any timm backbone, optionally fused with tabular OOF score features.

Weights never come from a hub: ``pretrained: true`` loads a local file (``pretrained_path``) or
fails at once, because timm's hub retries cost ~47 s each and the GPU machines are offline.
Validation gathers the whole fold before scoring, since pAUC above 80% TPR depends on the rank
of every positive and is meaningless per batch.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl_
import timm
import torch
from torch import nn

from isicstack.data.metric import pauc, roc_auc

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def find_pretrained(model_name: str, pretrained_path: str) -> Path:
    """The local weight file for ``model_name``: ``pretrained_path`` itself, or a file in it.

    In a folder, looks for ``<name>.<ext>`` and ``<name>/model.safetensors`` /
    ``pytorch_model.bin`` (the hub layout), for the full name and the architecture without tag.
    """
    if not pretrained_path:
        raise FileNotFoundError(
            f"pretrained=true for {model_name!r} but pretrained_path is empty; hub downloads "
            "are disabled (offline). Point pretrained_path at a timm state-dict file "
            "(.safetensors/.pth) or set pretrained=false"
        )
    path = Path(pretrained_path)
    if path.is_file():
        return path
    looked = [path]
    if path.is_dir():
        names = dict.fromkeys([model_name, model_name.split(".")[0]])
        for n in names:
            cands = [path / f"{n}{s}" for s in WEIGHT_SUFFIXES]
            cands += [path / n / "model.safetensors", path / n / "pytorch_model.bin"]
            for c in cands:
                if c.is_file():
                    return c
            looked += cands
    shown = ", ".join(str(p) for p in looked[:6]) + (" ..." if len(looked) > 6 else "")
    raise FileNotFoundError(
        f"pretrained=true for {model_name!r} but no local weights found (looked at {shown}); "
        "hub downloads are disabled (offline). Put a timm state dict there or set pretrained=false"
    )


def create_backbone(model_name: str, pretrained: bool = False, pretrained_path: str = "",
                    drop_rate: float = 0.0) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0)`` plus local weights if asked."""
    weights = find_pretrained(model_name, pretrained_path) if pretrained else None
    try:
        model = timm.create_model(model_name, pretrained=False, num_classes=0, drop_rate=drop_rate)
    except RuntimeError as err:  # timm: "Unknown model (...)"
        raise ValueError(f"model_name {model_name!r}: {err}") from err
    if weights is not None:
        state = timm.models.load_state_dict(str(weights))
        classifier = model.pretrained_cfg.get("classifier") or ""
        heads = classifier if isinstance(classifier, (list, tuple)) else [classifier]
        state = {k: v for k, v in state.items()
                 if not any(h and k.startswith(h + ".") for h in heads)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(
                f"{weights}: does not fit {model_name!r}: {len(missing)} missing key(s), "
                f"e.g. {missing[:3]}"
            )
        if unexpected:
            log.warning("%s: ignored %d unexpected key(s), e.g. %s", weights, len(unexpected),
                        unexpected[:3])
        log.info("loaded pretrained weights for %s from %s", model_name, weights)
    return model


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup from ~0 to 1 over ``warmup`` steps, then cosine to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class ImageClassifier(pl_.LightningModule):
    """Backbone embedding (+ standardised tabular score features) -> small head -> one logit."""

    def __init__(
        self,
        model_name: str = "resnet50",
        n_tab: int = 0,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        backbone_lr_mult: float = 1.0,
        pos_weight: float = 1.0,
        warmup_frac: float = 0.1,
        pretrained: bool = False,
        pretrained_path: str = "",
        head_hidden: int = 64,
        drop_rate: float = 0.2,
        channels_last: bool = False,
        tta_flip: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = create_backbone(model_name, pretrained, pretrained_path)
        dim = int(self.backbone.num_features)
        self.n_tab = int(n_tab)
        if self.n_tab:
            self.head = nn.Sequential(
                nn.Linear(dim + self.n_tab, head_hidden), nn.SiLU(), nn.Dropout(drop_rate),
                nn.Linear(head_hidden, 1))
            # direct path so the tabular score helps from the first step; it starts as the
            # standardised tabular logit itself (column 0) and the image part at zero: a random
            # init could give the skip a negative sign that a short CPU run never corrects,
            # inverting the tabular ranking on a whole fold (seen: fold AUC 0.22 vs 0.88)
            self.tab_skip: nn.Module | None = nn.Linear(self.n_tab, 1)
            with torch.no_grad():
                self.tab_skip.weight.zero_()
                self.tab_skip.weight[0, 0] = 1.0
                self.tab_skip.bias.zero_()
                self.head[-1].weight.zero_()
                self.head[-1].bias.zero_()
        else:
            self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(dim, 1))
            self.tab_skip = None
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)), persistent=False)
        self.channels_last = channels_last
        self.tta_flip = tta_flip
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self._val: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.last_val: dict[str, Any] | None = None

    def forward(self, image: torch.Tensor, tab: torch.Tensor | None = None) -> torch.Tensor:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        feat = self.backbone(image)
        if self.tab_skip is not None:
            if tab is None or tab.shape[-1] != self.n_tab:
                raise ValueError(f"fusion model expects {self.n_tab} tab features per row")
            tab = tab.to(feat.dtype)
            return (self.head(torch.cat([feat, tab], dim=1)) + self.tab_skip(tab)).squeeze(1)
        return self.head(feat).squeeze(1)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(
            logits.float(), target.float(), pos_weight=self.pos_weight)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self(batch["image"], batch["tab"]), batch["target"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=batch["target"].shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch["image"], batch["tab"]).float()
        self._val.append((batch["index"].detach(), logits.detach(), batch["target"].detach()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        index = torch.cat([v[0] for v in self._val])
        logits = torch.cat([v[1] for v in self._val])
        target = torch.cat([v[2] for v in self._val])
        self._val = []
        if self.trainer.world_size > 1:  # distributed samplers pad: gather, then dedupe by index
            index, logits, target = (self.all_gather(t).reshape(-1)
                                     for t in (index, logits, target))
        idx = index.cpu().numpy()
        _, first = np.unique(idx, return_index=True)
        idx, z, y = idx[first], logits.cpu().numpy()[first], target.cpu().numpy()[first]
        loss = float(nn.functional.binary_cross_entropy_with_logits(
            torch.from_numpy(z), torch.from_numpy(y)))
        p = 1.0 / (1.0 + np.exp(-z))
        if 0 < y.sum() < y.size:
            score, auc = pauc(y, p), roc_auc(y, p)
        else:  # a (partial) fold without both classes: keep the metric defined, never best
            score, auc = 0.0, 0.5
        self.log_dict({"val/pauc": score, "val/auc": auc, "val/loss": loss}, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.last_val = {"epoch": self.current_epoch, "index": idx, "pred": p}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        prob = torch.sigmoid(self(batch["image"], batch["tab"]).float())
        if self.tta_flip:
            flipped = torch.flip(batch["image"], dims=[3])
            prob = 0.5 * (prob + torch.sigmoid(self(flipped, batch["tab"]).float()))
        return {"index": batch["index"].cpu(), "pred": prob.cpu()}

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            is_backbone = name.startswith("backbone.")
            no_decay = p.ndim <= 1  # biases and norm scales: no weight decay
            groups.setdefault((is_backbone, no_decay), []).append(p)
        params = [
            {"params": ps, "lr": hp.lr * (hp.backbone_lr_mult if bb else 1.0),
             "weight_decay": 0.0 if nd else hp.weight_decay}
            for (bb, nd), ps in groups.items()
        ]
        opt = torch.optim.AdamW(params, lr=hp.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp.warmup_frac * total)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cosine_with_warmup(s, total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
