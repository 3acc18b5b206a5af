"""Pictures of Grad-CAM maps: a crop with its heatmap, side-by-side panels, the report's grid.

The colour overlay is the library's ``show_cam_on_image``; this module resizes the map to the
crop (the map is at the model's input size, the crop at its own) and lays out the PNGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from isicstack.data.io import atomic_path, save_png
from isicstack.extras import require

GAP = 4  # pixels between the crop and its overlay


def resize_map(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (h, w) map in [0, 1] resized bilinearly to the crop's size."""
    img = Image.fromarray(np.asarray(cam, dtype=np.float32))  # mode F
    return np.clip(np.asarray(img.resize((width, height), Image.Resampling.BILINEAR)), 0, 1)


def overlay(crop: np.ndarray, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """uint8 RGB: the crop with its Grad-CAM heatmap blended in (jet colour map)."""
    require("pytorch_grad_cam", needed_by="the Grad-CAM overlay (isic explain, the report's "
            "and the app's heatmaps)", instead="leave Grad-CAM out (report: gradcam.enabled=false)")
    from pytorch_grad_cam.utils.image import show_cam_on_image

    if not 0 <= image_weight <= 1:
        raise ValueError(f"image_weight must be in [0, 1], got {image_weight}")
    mask = resize_map(cam, crop.shape[0], crop.shape[1])
    return show_cam_on_image(crop.astype(np.float32) / 255.0, mask, use_rgb=True,
                             image_weight=image_weight)


def upscale(image: np.ndarray, height: int) -> np.ndarray:
    """Enlarge a small crop for viewing (a 130 px crop is hard to read); never shrinks."""
    if height <= image.shape[0]:
        return image
    width = round(image.shape[1] * height / image.shape[0])
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def panel(crop: np.ndarray, cam: np.ndarray, image_weight: float = 0.5,
          height: int = 256) -> np.ndarray:
    """The crop and the crop with its heatmap, side by side on white, ``height`` px tall."""
    left, right = upscale(crop, height), upscale(overlay(crop, cam, image_weight), height)
    out = np.full((left.shape[0], left.shape[1] + GAP + right.shape[1], 3), 255, np.uint8)
    out[:, :left.shape[1]] = left
    out[:, left.shape[1] + GAP:] = right
    return out


def write_png(image: np.ndarray, path: Path) -> Path:
    """An RGB uint8 array as PNG, written atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


def grid(rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], path: Path,
         dpi: int = 110) -> str:
    """A figure of overlays, one row per group (title, [(caption, image), ...]) -> PNG name."""
    cols = max(1, max(len(items) for _, items in rows))
    fig = Figure(figsize=(2.6 * cols, 2.9 * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (title, items) in enumerate(rows):
        for c in range(cols):
            ax: Any = axes[r][c]
            ax.axis("off")
            if c < len(items):
                ax.imshow(items[c][1])
                ax.set_title(items[c][0], fontsize=7)
        axes[r][0].text(-0.08, 0.5, title, transform=axes[r][0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi)


