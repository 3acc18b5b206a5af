"""The config of ``isic synth`` (``configs/synth.yaml``): size, difficulty and output folder of
a synthetic data set. Kept apart from ``generate.py`` so ``isic synth --help`` loads no
generator (NumPy, polars, the image encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from isicstack.settings.command import Command


@dataclass
class SynthConfig:
    """Size, difficulty and output folder of a synthetic data set."""

    COMMAND: ClassVar[Command] = Command(
        "synth", "isicstack.synthetic.generate",
        "generate a synthetic data set in the exact ISIC 2024 layout",
        flags=("rows", "test_rows", "patients", "prevalence", "image_size", "seed", "out",
               "workers"))

    rows: int = 20000  # train rows (lesions)
    test_rows: int = 2000  # rows of the test files
    patients: int = 300  # patients the train rows belong to
    prevalence: float = 0.01  # share of malignant train rows
    image_size: int = 64  # crop side in px
    seed: int = 0  # same seed, same data set
    out: str = "datasets/synthetic/default"  # output folder (the Kaggle file layout)
    workers: int = 2  # processes encoding the crops
    jpeg_quality: int = 90  # JPEG quality of the crops (1-100)
