"""What a user hands the web app, checked before any model sees it.

An upload must be a JPEG or PNG of at most ``max_pixels`` pixels (checked from the header,
before decoding: a small PNG can declare a huge canvas). Metadata fields are a few key columns
of the test schema (``data.schema``); each is optional, bounded, and categorical ones must be a
level of the competition data. Every problem is an :class:`InputError` whose message is shown
in the page as is.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.schema import BY_NAME, LEVELS, columns_for
from isicstack.serving.inputs import InputError, decode_crop

UPLOAD_ID = "ISIC_UPLOAD"
UPLOAD_PATIENT = "IP_UPLOAD"


@dataclass(frozen=True)
class Field:
    """One metadata input: a test-schema column with its label and allowed values."""

    name: str
    label: str
    low: float = -math.inf
    high: float = math.inf

    @property
    def levels(self) -> tuple[str, ...]:
        return LEVELS.get(self.name, ())

    @property
    def numeric(self) -> bool:
        return BY_NAME[self.name].kind == "numeric"


FIELDS: tuple[Field, ...] = (
    Field("age_approx", "age (years)", 0, 120),
    Field("sex", "sex"),
    Field("anatom_site_general", "anatomical site"),
    Field("tbp_lv_location_simple", "body location"),
    Field("clin_size_long_diam_mm", "longest diameter (mm)", 0, 200),
    Field("tbp_lv_areaMM2", "area (mm²)", 0, 10_000),
    Field("tbp_lv_eccentricity", "eccentricity (0-1)", 0, 1),
    Field("tbp_lv_color_std_mean", "colour irregularity (TBP color_std_mean)", 0, 100),
    Field("tbp_lv_deltaLBnorm", "contrast to skin (TBP deltaLBnorm)", 0, 100),
    Field("tbp_lv_nevi_confidence", "nevus confidence (TBP, 0-100)", 0, 100),
)


def read_upload(path: str | os.PathLike[str] | None, max_pixels: int) -> np.ndarray:
    """The uploaded file as RGB uint8 (H, W, 3), or an InputError saying what is wrong (checked
    as the API checks a crop: ``serving.inputs.decode_crop``)."""
    if path is None:
        raise InputError("Upload a lesion crop (JPEG or PNG) first.")
    name = Path(path).name
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"{name}: the file could not be read ({err}).") from err
    return decode_crop(data, name, max_pixels)


def _number(field: Field, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InputError(f"{field.label}: {raw!r} is not a number.") from None
    if not math.isfinite(value) or not field.low <= value <= field.high:
        raise InputError(f"{field.label}: {raw} is outside {field.low:g} to {field.high:g}.")
    return value


def parse_metadata(values: dict[str, Any]) -> dict[str, Any] | None:
    """Checked metadata ``{column: value}`` of the fields given, or None when none is given."""
    unknown = set(values) - {f.name for f in FIELDS}
    if unknown:
        raise InputError(f"unknown metadata field(s): {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for field in FIELDS:
        raw = values.get(field.name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        if field.numeric:
            out[field.name] = _number(field, raw)
        elif raw not in field.levels:
            raise InputError(f"{field.label}: {raw!r} is not one of {', '.join(field.levels)}.")
        else:
            out[field.name] = raw
    return out or None


def metadata_row(meta: dict[str, Any]) -> pl.DataFrame:
    """One test-schema row: the given fields, every other column null (the models' NaN)."""
    cols = columns_for("test")
    row = {c: [meta.get(c)] for c in cols}
    row["isic_id"], row["patient_id"] = [UPLOAD_ID], [UPLOAD_PATIENT]
    return pl.DataFrame(row, schema={c: BY_NAME[c].dtype for c in cols})
