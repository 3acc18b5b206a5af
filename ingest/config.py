"""The config of ``isic ingest`` (``configs/ingest.yaml``), kept apart from ``ingest.py``
(Pillow, HDF5) so ``isic ingest --help`` loads neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from isicstack.settings.command import Command


@dataclass
class IngestConfig:
    """Config of ``isic ingest`` (``configs/ingest.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "ingest", "isicstack.ingest.ingest",
        "other ISIC data (JPEG folder + label CSV) -> HDF5 crops + labels.csv",
        flags=("images", "labels", "layout", "out", "metadata", "size"))

    images: str = ""  # folder of <id>.jpg files (searched recursively)
    labels: str = ""  # the layout's label CSV
    layout: Literal["isic2019", "isic2020", "generic"] = "generic"  # isic2019: target = MEL
    out: str = ""     # writes images.hdf5, labels.csv, ingest.json
    metadata: str = ""  # isic2019 only: ISIC_2019_Training_Metadata.csv (age, sex, lesion_id)
    size: int = 128  # centre square crop resized to size x size px; 0 keeps the image as is
    color_constancy: bool = False  # Shades of Gray before resizing
    jpeg_quality: int = 90  # of the written crops
    on_bad_image: Literal["error", "list"] = "error"  # list: skip unreadable images, name them
    workers: int = 1  # processes decoding/resizing/encoding (the HDF5 is written by one)
    id_column: str = "isic_id"  # generic layout only
    target_column: str = "target"  # generic layout only
    patient_column: str = "patient_id"  # generic layout only; used when present
