"""Colour constancy of a crop (numpy only): read by training, ingest and the app alike."""

from __future__ import annotations

import numpy as np


def shades_of_gray(image: np.ndarray, power: int = 6) -> np.ndarray:
    """Shades-of-Gray colour constancy (Finlayson 2004): equalise the Minkowski-p channel norms.

    Removes the illuminant / camera colour cast that differs between hospitals.
    """
    img = image.astype(np.float32)
    norm = np.power(np.mean(np.power(img, power), axis=(0, 1)), 1.0 / power)
    norm = norm / max(float(np.sqrt(np.sum(norm**2))), 1e-6)
    scale = 1.0 / np.maximum(norm * np.sqrt(3.0), 1e-6)
    return np.clip(img * scale, 0, 255).astype(np.uint8)
