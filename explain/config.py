"""Grad-CAM configs: ``isic explain`` (``configs/explain.yaml``) and the report's Grad-CAM grid
(``report.yaml: gradcam``).

Kept apart from ``explain.py`` and ``report_section.py`` (torch): the report's config and
``isic explain --help`` load without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from isicstack.settings.command import Command


@dataclass
class ExplainConfig:
    """Config of ``isic explain`` (``configs/explain.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "explain", "isicstack.explain.explain",
        "Grad-CAM of an image-only run: one PNG per isic_id (isic_ids=[...])",
        flags=("isic_ids", "ids_file", "images"))  # --isic-ids ISIC_1,ISIC_2

    data_dir: str = "auto"        # its train-image.hdf5 is the default image source
    artifacts: str = "artifacts"  # holds runs/<name>/
    profile: str = "default"      # config profile in use (set by --profile)
    # a fused run is refused: its score also needs the tabular features
    name: str = ""  # an image-only run under artifacts/runs/; "" = the chain's (chain.yaml)
    isic_ids: list[str] | str = field(default_factory=list)  # a list, or "ISIC_1,ISIC_2"
    ids_file: str = ""            # more ids: one per line, or a CSV with an isic_id column
    images: str = ""              # HDF5 or JPEG folder; "" = <data_dir>/train-image.hdf5
    out: str = ""                 # "" = <artifacts>/explain/<name>
    layer: str = ""               # "" = the deepest backbone stage with a map >= min_map wide
    min_map: int = 4              # 64 px ResNet: layer3 (4 x 4), not layer4 (2 x 2)
    image_weight: float = 0.5     # share of the crop in the overlay
    display_size: int = 256       # PNG height of each half (small crops are enlarged)
    max_ids: int = 1000           # more ids are refused
    accelerator: str = "cpu"      # cpu | gpu | auto
    cpu_threads: int = 0          # 0 = every core


@dataclass
class GradcamReportConfig:
    """``report.yaml: gradcam``: which image run and how many crops per row."""

    enabled: bool = True          # add the Grad-CAM grid
    name: str = ""  # an image-only run with OOF scores; "" = the chain's (chain.yaml)
    top: int = 4                  # crops per row (positives, false positives)
    layer: str = ""               # "" = the deepest backbone stage with a map >= min_map wide
    min_map: int = 4              # smallest map width (cells) of the layer
    image_weight: float = 0.5     # share of the crop in the overlay
