"""The ``strong`` recipe's colour jitter, computed the cheap way on a float crop.

torchvision's ``ColorJitter(0.2, 0.2, 0.2, 0.02)`` on a 128 px crop cost ~1 ms, about 20
decodes of the crop (``benchmarks/bench_loader.py``), nearly all of it in ``adjust_hue``'s
generic RGB -> HSV -> RGB round trip, dozens of small torch ops. :class:`ColourJitter` is the
same transform on the ``[0, 1]`` float crop: the same random parameters drawn in the same order
from torch's RNG (``RandomApply``'s draw, the order permutation, then the four factors), the
brightness, contrast and saturation blends as torchvision computes them, and the hue shift in
closed form (the hexcone's ``V - C * clamp(min(k, 4 - k), 0, 1)``), each clamped like
torchvision's, in numpy (a fraction of torch's per-op cost on a 128 px image). It matches
torchvision's float result to float rounding; against the old uint8 pipeline it differs only by
the uint8 rounding between the ops.
"""

from __future__ import annotations

import numpy as np
import torch

GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
_HEX = np.array([5.0, 3.0, 1.0], np.float32).reshape(3, 1, 1)  # hexcone offsets of R, G, B
F32 = np.float32


def _grey(x: np.ndarray) -> np.ndarray:
    """(H, W) luma of a (3, H, W) float32 image, as torchvision computes it."""
    return x[0] * F32(GREY[0]) + x[1] * F32(GREY[1]) + x[2] * F32(GREY[2])


def _blend(x: np.ndarray, other: np.ndarray | np.float32, factor: float) -> np.ndarray:
    out = x * F32(factor) + other * F32(1.0 - factor)
    return np.clip(out, F32(0.0), F32(1.0), out=out)


def adjust_hue(x: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the HSV hue of a (3, H, W) float32 image in [0, 1] by ``shift`` turns."""
    r, g, b = x
    top = x.max(0)
    chroma = top - x.min(0)
    is_r = top == r
    is_g = (top == g) & ~is_r  # torchvision's precedence when channels tie: r, g, b
    h6 = np.where(is_r, g - b, np.where(is_g, b - r, r - g)) / np.maximum(chroma, F32(1e-12))
    h6 += is_g * F32(2.0) + ~(is_r | is_g) * F32(4.0) + F32(6.0 * shift)  # hue in sixths
    k = h6[None] + _HEX
    k -= F32(6.0) * np.floor(k * F32(1.0 / 6.0))  # mod 6
    ramp = np.clip(F32(2.0) - np.abs(k - F32(2.0)), F32(0.0), F32(1.0))  # min(k, 4 - k)
    out = top[None] - chroma[None] * ramp
    return np.clip(out, F32(0.0), F32(1.0), out=out)


class ColourJitter(torch.nn.Module):
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` on a float
    (3, H, W) tensor in [0, 1]; see the module docstring for why it is not torchvision's."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 hue: float = 0.02, p: float = 0.8) -> None:
        super().__init__()
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.hue, self.p = hue, p

    @staticmethod
    def _factor(spread: float, centre: float = 1.0) -> float:
        return float(torch.empty(1).uniform_(centre - spread, centre + spread))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(1) >= self.p:  # RandomApply's draw
            return image
        order = torch.randperm(4).tolist()  # then ColorJitter's draws, in its order
        factors = (self._factor(self.brightness), self._factor(self.contrast),
                   self._factor(self.saturation), self._factor(self.hue, 0.0))
        x = image.numpy()
        for i in order:
            if i == 0:
                x = np.clip(x * F32(factors[0]), F32(0.0), F32(1.0))
            elif i == 1:
                x = _blend(x, _grey(x).mean(dtype=F32), factors[1])
            elif i == 2:
                x = _blend(x, _grey(x)[None], factors[2])
            else:
                x = adjust_hue(x, factors[3])
        return torch.from_numpy(x)

    def extra_repr(self) -> str:
        return (f"brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue}, p={self.p}")
