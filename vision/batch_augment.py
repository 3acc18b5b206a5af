"""The training augmentation on a whole batch, on the device, so a loader worker only reads and
decodes (``augment_on: device``).

Why: per crop in a loader worker, the ``strong`` recipe cost ~15 decodes of the crop
(``benchmarks/results/loader.json``, ``stage_us``), so no number of CPU cores per GPU was
reasonable; on a GPU the same work for a batch is a few kernel launches. torchvision's v2
transforms draw one set of random parameters per call (per batch, not per crop) and kornia is
not a dependency, so the per-crop draw is written here: one affine sampling (``affine_grid`` +
``grid_sample``) does the random resized crop, the resize and both flips of every crop at once;
the colour jitter blends per crop with broadcast factors. The parameters follow torchvision's
``RandomResizedCrop(scale, ratio)`` (ten tries, then the centre crop clamped to the ratio),
``RandomHorizontalFlip``/``RandomVerticalFlip`` (p=0.5 each) and ``RandomApply([ColorJitter(b,
c, s, h)], p)``; the jitter's order of operations is drawn once per batch, not per crop.

Input: a packed batch (:func:`packed_canvas`: each decoded crop, any size, contiguous in its
row) with each crop's height and width, laid out on the device by :func:`unpack`. Differences
from the loader path: bilinear sampling (below a 2x downscale; above it the canvas is first
average-pooled by the batch's whole factor) where torchvision resizes with antialiasing, and its
own random stream.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from typing import Any

import numpy as np
import torch
from torch.nn import functional as nnf
from torch.utils.data import default_collate, get_worker_info

GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def padded_batch(images: list[np.ndarray], pool: Executor | None = None,
                 parts: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded HWC uint8 crops of any sizes -> the packed batch (:func:`packed_canvas`) and
    ``hw`` (B, 2): one contiguous copy per crop, no resampling; ``pool``: the copies in
    ``parts`` slices on its threads (numpy copies release the GIL)."""
    image, hw, view = packed_canvas([im.shape[:2] for im in images])

    def fill(rows: range) -> None:
        for i in rows:
            view[i, : images[i].size] = images[i].reshape(-1)

    if pool is None or parts < 2:
        fill(range(len(images)))
    else:
        list(pool.map(fill, slices(len(images), parts)))
    return image, torch.from_numpy(hw)


def packed_canvas(sizes: list[tuple[int, int]], reuse: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """An uninitialised packed batch for crops of ``sizes``: (B, H * W * 3) uint8 for the
    batch's largest H and W, crop ``i`` contiguous (h_i, w_i, 3) at the start of row ``i``
    (so a decoder writes it in place, :func:`unpack` lays it out), ``hw``, and the numpy view
    to fill. In a loader worker process it lies in shared memory (sent without a copy);
    ``reuse``: a flat uint8 buffer to lay it in when large enough (fresh pages cost more to
    touch than to fill)."""
    hw = np.array(sizes, dtype=np.int64).reshape(-1, 2)
    shape = (len(hw), int(hw[:, 0].max()) * int(hw[:, 1].max()) * 3)
    need = shape[0] * shape[1]
    if reuse is not None and reuse.numel() >= need:
        canvas = reuse[:need].view(shape)
    elif get_worker_info() is None:
        canvas = torch.empty(shape, dtype=torch.uint8)
    else:
        storage = torch.UntypedStorage._new_shared(need)
        canvas = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    return canvas, hw, canvas.numpy()  # past a crop's h * w * 3 bytes: never read


def unpack(packed: torch.Tensor, hw: torch.Tensor) -> torch.Tensor:
    """A packed batch -> (B, 3, H, W) with each crop top-left (channels_last in memory), in
    one gather on the batch's device; beside a crop, other pixels of it (never sampled:
    :func:`sample_boxes` clamps to the crop)."""
    b = packed.shape[0]
    hmax, wmax = int(hw[:, 0].max()), int(hw[:, 1].max())
    hw = hw.to(packed.device)
    y = torch.arange(hmax, device=packed.device).view(1, -1, 1)
    x = torch.arange(wmax, device=packed.device).view(1, 1, -1)
    w = hw[:, 1].view(-1, 1, 1)
    idx = torch.minimum(y * w + x, (hw[:, 0] * hw[:, 1] - 1).view(-1, 1, 1))
    pixels = packed[:, : packed.shape[1] // 3 * 3].view(b, -1, 3)
    out = pixels.gather(1, idx.view(b, -1, 1).expand(-1, -1, 3))
    return out.view(b, hmax, wmax, 3).permute(0, 3, 1, 2)


def slices(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` contiguous slices (one task per thread, not per crop)."""
    cuts = np.linspace(0, n, max(1, min(parts, n)) + 1).astype(int)
    return [range(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def collate_padded(samples: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    """Samples whose ``image`` is a decoded HWC crop -> the batch of :func:`padded_batch` with
    the other keys collated as usual (a loader worker's share); a batch a dataset already
    built (``CropDataset`` with threads) passes through."""
    if isinstance(samples, dict):
        return samples
    image, hw = padded_batch([np.asarray(s["image"]) for s in samples])
    rest = default_collate([{k: v for k, v in s.items() if k != "image"} for s in samples])
    return {**rest, "image": image, "hw": hw}


def crop_boxes(hw: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float],
               generator: torch.Generator | None = None, tries: int = 10) -> torch.Tensor:
    """(B, 4) boxes ``y0, x0, h, w`` (pixels) drawn as ``RandomResizedCrop.get_params`` draws
    them, per crop: the first of ``tries`` candidates that fits, else the clamped centre crop."""
    b, dev = hw.shape[0], hw.device
    h, w = hw[:, 0:1].double(), hw[:, 1:2].double()
    area = h * w * torch.empty(b, tries, dtype=torch.float64, device=dev).uniform_(
        *scale, generator=generator)
    log_r = torch.empty(b, tries, dtype=torch.float64, device=dev).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    cw = torch.round(torch.sqrt(area * torch.exp(log_r)))
    ch = torch.round(torch.sqrt(area / torch.exp(log_r)))
    ok = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)
    first = torch.where(ok.any(1), ok.double().argmax(1), -1)
    take = first.clamp(min=0)[:, None]
    ch, cw = ch.gather(1, take)[:, 0], cw.gather(1, take)[:, 0]
    h, w = h[:, 0], w[:, 0]
    # torchvision's fallback: the whole crop, clamped to the ratio range, centred
    in_r = w / h
    fw = torch.where(in_r < ratio[0], w, torch.where(in_r > ratio[1], torch.round(h * ratio[1]),
                                                       w))
    fh = torch.where(in_r < ratio[0], torch.round(w / ratio[0]), h)
    fall = first < 0
    ch, cw = torch.where(fall, fh, ch), torch.where(fall, fw, cw)
    u = torch.rand(b, 2, dtype=torch.float64, device=dev, generator=generator)
    y0 = torch.where(fall, torch.div(h - ch, 2, rounding_mode="floor"),
                     torch.floor(u[:, 0] * (h - ch + 1)))
    x0 = torch.where(fall, torch.div(w - cw, 2, rounding_mode="floor"),
                     torch.floor(u[:, 1] * (w - cw + 1)))
    return torch.stack([y0, x0, ch, cw], 1)


def sample_boxes(canvas: torch.Tensor, boxes: torch.Tensor, size: int,
                 flips: torch.Tensor | None = None, hw: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Each crop's ``box`` (y0, x0, h, w in canvas pixels) resampled to ``size`` x ``size``
    (bilinear, as ``nnf.interpolate(align_corners=False)`` maps pixels and clamps at the
    crop's edge, ``hw``: its height and width, default the canvas), flipped where ``flips``
    (B, 2: horizontal, vertical) says. ``canvas`` is float (B, C, H, W)."""
    b, _, hc, wc = canvas.shape
    boxes = boxes.to(canvas.device, torch.float64)
    if hw is None:
        hw = torch.tensor([[hc, wc]], device=canvas.device).expand(b, 2)
    hw = hw.to(canvas.device, torch.float64)
    k = int((boxes[:, 2:].min() / size).floor().clamp(min=1))  # whole downscale of the batch
    if k >= 2:  # bilinear alone would alias: average k x k blocks first
        canvas = nnf.avg_pool2d(canvas, k)
        boxes, hc, wc = boxes / k, canvas.shape[2], canvas.shape[3]
        hw = torch.floor(hw / k)  # whole blocks only: a partial one would average in padding
    y0, x0, h, w = boxes.unbind(1)
    sx, sy = w / wc, h / hc
    if flips is not None:
        f = flips.to(canvas.device)
        sx, sy = torch.where(f[:, 0], -sx, sx), torch.where(f[:, 1], -sy, sy)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, (2 * x0 + w) / wc - 1], 1),
                         torch.stack([zero, sy, (2 * y0 + h) / hc - 1], 1)], 1)
    grid = nnf.affine_grid(theta.to(canvas.dtype), [b, canvas.shape[1], size, size],
                          align_corners=False)
    # clamp each sample to its own crop (pixel centres 0 .. w-1), as a resize clamps at the
    # edge: the zeros beyond a crop never enter the bilinear weights
    lim = torch.stack([(2 * hw[:, 1] - 1) / wc - 1, (2 * hw[:, 0] - 1) / hc - 1], 1)
    lo = torch.stack([1 / wc - 1 + 0 * hw[:, 1], 1 / hc - 1 + 0 * hw[:, 0]], 1)
    grid = torch.maximum(torch.minimum(grid, lim.to(grid.dtype).view(b, 1, 1, 2)),
                         lo.to(grid.dtype).view(b, 1, 1, 2))
    return nnf.grid_sample(canvas, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] * GREY[0] + x[:, 1] * GREY[1] + x[:, 2] * GREY[2]).unsqueeze(1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of (B, 3, H, W) images in [0, 1] by ``shift`` (B,) turns (the
    hexcone in closed form, torchvision's tie order r, g, b; as ``augment.adjust_hue``)."""
    r, g, b = x.unbind(1)
    top, low = x.max(1).values, x.min(1).values
    chroma = top - low
    is_r = top == r
    is_g = (top == g) & ~is_r
    h6 = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g)) / chroma.clamp(min=1e-12)
    h6 = h6 + is_g * 2.0 + (~(is_r | is_g)) * 4.0 + 6.0 * shift.view(-1, 1, 1)
    k = h6.unsqueeze(1) + torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1)
    k = k - 6.0 * torch.floor(k / 6.0)
    ramp = (2.0 - (k - 2.0).abs()).clamp(0.0, 1.0)
    return (top.unsqueeze(1) - chroma.unsqueeze(1) * ramp).clamp(0.0, 1.0)


def colour_jitter(x: torch.Tensor, b: float, c: float, s: float, h: float, p: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``RandomApply([ColorJitter(b, c, s, h)], p)`` per crop of a float (B, 3, H, W) batch in
    [0, 1]: own factors and own draw of ``p`` per crop, one order of the four per batch."""
    n, dev = x.shape[0], x.device

    def draw(lo: float, hi: float) -> torch.Tensor:
        return torch.empty(n, device=dev).uniform_(lo, hi, generator=generator).view(-1, 1, 1, 1)

    on = (torch.rand(n, device=dev, generator=generator) < p).view(-1, 1, 1, 1)
    fb, fc, fs = draw(1 - b, 1 + b), draw(1 - c, 1 + c), draw(1 - s, 1 + s)
    fh = draw(-h, h).view(-1)
    out = x
    for i in torch.randperm(4, generator=generator).tolist():
        if i == 0:
            out = (out * fb).clamp(0.0, 1.0)
        elif i == 1:
            mean = _grey(out).mean(dim=(1, 2, 3), keepdim=True)
            out = (out * fc + mean * (1 - fc)).clamp(0.0, 1.0)
        elif i == 2:
            out = (out * fs + _grey(out) * (1 - fs)).clamp(0.0, 1.0)
        else:
            out = adjust_hue(out, fh)
    return torch.where(on, out, x)


class BatchAugment(torch.nn.Module):
    """The training transform of ``augment`` (``flips`` | ``strong`` | ``none``) for a
    :func:`collate_padded` batch on its device: float, normalised, ``size`` x ``size``."""

    def __init__(self, size: int, augment: str, mean: tuple[float, ...],
                 std: tuple[float, ...], scale: tuple[float, float] = (0.6, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        super().__init__()
        if augment not in ("none", "flips", "strong"):
            raise ValueError(f"augment must be none, flips or strong, got {augment!r}")
        self.size, self.augment, self.scale, self.ratio = size, augment, scale, ratio
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, canvas: torch.Tensor, hw: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if canvas.dim() == 2:  # packed (collate_padded, CropDataset threads)
            canvas = unpack(canvas, hw)
        x = canvas.float().div_(255.0)
        hw = hw.to(x.device)
        n = hw.shape[0]
        if self.augment == "strong":
            boxes = crop_boxes(hw, self.scale, self.ratio, generator)
        else:
            boxes = torch.cat([torch.zeros_like(hw), hw], 1).double()
        flips = (None if self.augment == "none" else
                 torch.rand(n, 2, device=x.device, generator=generator) < 0.5)
        x = sample_boxes(x, boxes, self.size, flips, hw)
        if self.augment == "strong":
            x = colour_jitter(x, 0.2, 0.2, 0.2, 0.02, 0.8, generator)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"size={self.size}, augment={self.augment}, scale={self.scale}"
