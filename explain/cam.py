"""Grad-CAM maps of the image stage's fold models through the ``grad-cam`` library.

The CAM computation is ``pytorch_grad_cam.GradCAM`` (a maintained implementation, not a
re-derivation); this module only picks the layer, wraps the model so the library sees one logit
per crop, and averages the maps of several fold models. The target layer is the last stage of
the timm backbone (``feature_info``, ``layer4`` for ResNets) whose map is at least ``min_map``
cells wide at the input size, else the last module whose output is 4-D; ``layer=`` names one.
Why ``min_map``: at the default 64 px a ResNet's ``layer4`` map is 2 x 2, which can only point
at a quadrant (seen: every heatmap in one corner); ``layer3`` (4 x 4) outlines the lesion. At
128 px (the ``full`` profile) ``layer4`` is 4 x 4 and is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from isicstack.extras import require


def last_stage_name(backbone: nn.Module, size: int = 0, min_map: int = 1) -> str:
    """Name (inside ``backbone``) of its deepest stage with a map of at least ``min_map`` cells
    across at input ``size`` (0: the last stage): timm ``feature_info``, else a probe."""
    info = getattr(backbone, "feature_info", None)
    info = getattr(info, "info", info)  # a timm FeatureInfo object holds the list
    stages = [d for d in info if d.get("module")] if isinstance(info, list) else []
    if stages:
        fit = [d for d in stages if size <= 0 or size // int(d.get("reduction", 1)) >= min_map]
        return str((fit or stages[:1])[-1]["module"])
    return _probe_last_4d(backbone, size or 64)


def _probe_last_4d(backbone: nn.Module, size: int) -> str:
    """The module that finished last with a 4-D (N, C, H, W) output on a blank input."""
    seen: list[str] = []
    hooks = [m.register_forward_hook(
        lambda _m, _i, out, n=name: seen.append(n)
        if isinstance(out, torch.Tensor) and out.ndim == 4 else None)
        for name, m in backbone.named_modules() if name]
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ValueError(f"{type(backbone).__name__}: no layer with a 4-D output for Grad-CAM")
    return seen[-1]


def target_layer(net: nn.Module, layer: str = "", size: int = 0, min_map: int = 1) -> nn.Module:
    """The module of ``net`` (an ImageClassifier) Grad-CAM reads: ``layer`` or the last stage."""
    name = layer or "backbone." + last_stage_name(net.backbone, size, min_map)
    try:
        return net.get_submodule(name)
    except AttributeError as err:
        raise ValueError(f"Grad-CAM layer {name!r} not found in the model "
                         "(e.g. backbone.layer4 for a ResNet)") from err


class LogitModel(nn.Module):
    """The image logit as an (N, 1) output: the library's target reads one score per crop."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image).reshape(-1, 1)


def cam_maps(nets: Sequence[nn.Module], images: torch.Tensor, layer: str = "",
             which: Sequence[int] | None = None, min_map: int = 4) -> np.ndarray:
    """(N, H, W) Grad-CAM in [0, 1] for normalised ``images`` (N, 3, H, W).

    Each crop's map is the mean of the maps of ``nets`` (every fold model), or of
    ``nets[which[i]]`` alone for crop ``i`` (the report: the fold that held the crop out).
    Fused models are refused: their logit also needs the tabular score.
    """
    require("pytorch_grad_cam", needed_by="Grad-CAM (isic explain, the report's and the app's "
            "heatmaps)", instead="leave Grad-CAM out (report: gradcam.enabled=false)")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    for net in nets:
        if getattr(net, "tab_skip", None) is not None:
            raise ValueError("Grad-CAM needs an image-only run (fusion=false); a fused model's "
                             "score also depends on the tabular features")
    out = np.zeros((images.shape[0], *images.shape[2:]), dtype=np.float64)
    count = np.zeros(images.shape[0])
    for k, net in enumerate(nets):
        rows = (np.arange(images.shape[0]) if which is None
                else np.flatnonzero(np.asarray(which) == k))
        if rows.size == 0:
            continue
        target = [ClassifierOutputTarget(0)] * rows.size
        module = target_layer(net, layer, int(images.shape[-1]), min_map)
        with GradCAM(LogitModel(net), [module]) as cam:
            out[rows] += cam(input_tensor=images[rows].float(), targets=target)
        count[rows] += 1
    if (count == 0).any():
        raise ValueError(f"no fold model for crop(s) {np.flatnonzero(count == 0).tolist()}")
    return (out / count[:, None, None]).astype(np.float32)
