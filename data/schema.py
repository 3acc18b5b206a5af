"""The ISIC 2024 metadata schema: all 55 train columns, 44 of which the test file carries.

One table is the single source of truth for names, dtypes, roles and split membership, so the
loader, the synthetic generator and the feature code cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

Kind = Literal["id", "target", "numeric", "categorical", "text"]
Split = Literal["train", "test"]


@dataclass(frozen=True)
class Column:
    """One metadata column: its polars dtype, its role and whether the test file has it."""

    name: str
    dtype: pl.DataType
    kind: Kind
    train_only: bool = False


_F = pl.Float64()
_S = pl.String()

# Order is the order of the Kaggle train-metadata.csv header.
COLUMNS: tuple[Column, ...] = (
    Column("isic_id", _S, "id"),
    Column("target", pl.Int8(), "target", train_only=True),
    Column("patient_id", _S, "id"),
    Column("age_approx", _F, "numeric"),
    Column("sex", _S, "categorical"),
    Column("anatom_site_general", _S, "categorical"),
    Column("clin_size_long_diam_mm", _F, "numeric"),
    Column("image_type", _S, "categorical"),
    Column("tbp_tile_type", _S, "categorical"),
    *(
        Column(f"tbp_lv_{n}", _F, "numeric")
        for n in ("A", "Aext", "B", "Bext", "C", "Cext", "H", "Hext", "L", "Lext", "areaMM2",
                  "area_perim_ratio", "color_std_mean", "deltaA", "deltaB", "deltaL", "deltaLB",
                  "deltaLBnorm", "eccentricity")
    ),
    Column("tbp_lv_location", _S, "categorical"),
    Column("tbp_lv_location_simple", _S, "categorical"),
    *(
        Column(f"tbp_lv_{n}", _F, "numeric")
        for n in ("minorAxisMM", "nevi_confidence", "norm_border", "norm_color", "perimeterMM",
                  "radial_color_std_max", "stdL", "stdLExt", "symm_2axis", "symm_2axis_angle",
                  "x", "y", "z")
    ),
    Column("attribution", _S, "categorical"),
    Column("copyright_license", _S, "categorical"),
    Column("lesion_id", _S, "text", train_only=True),
    Column("iddx_full", _S, "text", train_only=True),
    *(Column(f"iddx_{i}", _S, "text", train_only=True) for i in range(1, 6)),
    Column("mel_mitotic_index", _S, "text", train_only=True),
    Column("mel_thick_mm", _F, "numeric", train_only=True),
    Column("tbp_lv_dnn_lesion_confidence", _F, "numeric", train_only=True),
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
TRAIN_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS)
TEST_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if not c.train_only)
TRAIN_ONLY: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.train_only)

# Columns a model may use: present in the test file, not an identifier.
NUMERIC_FEATURES: tuple[str, ...] = tuple(
    c.name for c in COLUMNS if c.kind == "numeric" and not c.train_only
)
CATEGORICAL_FEATURES: tuple[str, ...] = (
    "sex", "anatom_site_general", "tbp_tile_type", "tbp_lv_location",
    "tbp_lv_location_simple", "attribution",
)

# Real category levels of the competition data (train-metadata.csv, 401,059 rows).
LEVELS: dict[str, tuple[str, ...]] = {
    "sex": ("male", "female"),
    "anatom_site_general": ("posterior torso", "lower extremity", "anterior torso",
                            "upper extremity", "head/neck"),
    "image_type": ("TBP tile: close-up",),
    "tbp_tile_type": ("3D: XP", "3D: white"),
    "tbp_lv_location": (
        "Torso Back Top Third", "Torso Front Top Half", "Torso Back Middle Third",
        "Left Leg - Lower", "Right Leg - Lower", "Torso Front Bottom Half", "Left Leg - Upper",
        "Right Leg - Upper", "Right Arm - Upper", "Left Arm - Upper", "Head & Neck",
        "Right Arm - Lower", "Left Arm - Lower", "Torso Back Bottom Third", "Left Leg",
        "Right Leg", "Left Arm", "Right Arm", "Torso Front", "Torso Back", "Unknown",
    ),
    "tbp_lv_location_simple": ("Torso Back", "Torso Front", "Left Leg", "Right Leg", "Left Arm",
                               "Right Arm", "Head & Neck", "Unknown"),
    "attribution": (
        "Memorial Sloan Kettering Cancer Center",
        "Department of Dermatology, Hospital Clínic de Barcelona",
        "University Hospital of Basel",
        "Frazer Institute, The University of Queensland, Dermatology Research Centre",
        "ACEMID MIA",
        "ViDIR Group, Department of Dermatology, Medical University of Vienna",
        "Department of Dermatology, University of Athens, Andreas Syggros Hospital of Skin and "
        "Venereal Diseases, Alexander Stratigos, Konstantinos Liopyris",
    ),
    "copyright_license": ("CC-BY", "CC-BY-NC", "CC-0"),
}


def columns_for(split: Split) -> tuple[str, ...]:
    """Required columns, in Kaggle order, of a ``train`` or ``test`` metadata file."""
    if split == "train":
        return TRAIN_COLUMNS
    if split == "test":
        return TEST_COLUMNS
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")

