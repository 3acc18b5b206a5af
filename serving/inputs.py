"""What a caller hands the deployed model, checked before any model sees it.

Shared by the HTTP API and the web page, so a crop or a metadata row is judged the same way
whichever door it came through: a crop must be a JPEG or PNG of at most ``max_pixels`` pixels
(checked from the header, before decoding: a small PNG can declare a huge canvas); a lesion's
metadata are the test file's columns (``data.schema``), each optional (missing: null, the
models' NaN), numbers finite, categories strings. A category the training data never had (a new
centre in ``attribution``) is scored, with a warning, and left to ``isic monitor`` to count.
Every problem is an :class:`InputError` whose message names the field.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import polars as pl
from PIL import Image, ImageOps, UnidentifiedImageError

from isicstack.data.schema import BY_NAME, LEVELS, columns_for

FORMATS = ("JPEG", "PNG")
IDS = ("isic_id", "patient_id")
# every metadata column a caller may send: the test file's, without the two ids
METADATA: tuple[str, ...] = tuple(c for c in columns_for("test") if c not in IDS)


class InputError(ValueError):
    """A bad crop or metadata value; the message is meant for the caller and names the field."""


def decode_crop(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The crop ``data`` as RGB uint8 (H, W, 3), or an InputError naming ``name``."""
    if not data:
        raise InputError(f"{name}: empty; upload a JPEG or PNG crop.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in FORMATS:
                raise InputError(f"{name}: a {img.format} image; upload a JPEG or PNG crop.")
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(f"{name}: {w} x {h} pixels is more than the {max_pixels:,} "
                                 "allowed; upload the lesion crop, not the whole photograph.")
            upright = ImageOps.exif_transpose(img)  # phone photos: EXIF rotation
            return np.array(upright.convert("RGB"))  # a writable copy
    except Image.DecompressionBombError as err:
        raise InputError(f"{name}: too many pixels ({err}); upload the lesion crop.") from err
    except UnidentifiedImageError as err:
        raise InputError(f"{name}: not a JPEG or PNG image.") from err
    except OSError as err:  # truncated or corrupt file
        raise InputError(f"{name}: the image could not be read ({err}).") from err


def _value(field: str, raw: Any, where: str) -> Any:
    if raw is None:
        return None
    if field not in BY_NAME or field in IDS:
        raise InputError(f"{where}: unknown field {field!r} (the test file's columns: "
                         f"data.schema)")
    if BY_NAME[field].kind == "numeric":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InputError(f"{where}.{field}: {raw!r} is not a number.")
        if not math.isfinite(raw):
            raise InputError(f"{where}.{field}: {raw!r} is not a finite number.")
        return float(raw)
    if not isinstance(raw, str):
        raise InputError(f"{where}.{field}: {raw!r} is not a string.")
    return raw


def lesion_frame(patient_id: str, lesions: list[dict[str, Any]]) -> pl.DataFrame:
    """One patient's lesions as test-schema rows (input order); ``lesions[i]`` holds
    ``isic_id`` and any metadata columns. Ids must be non-empty and unique."""
    if not patient_id:
        raise InputError("patient_id: empty.")
    if not lesions:
        raise InputError(f"patient {patient_id!r}: no lesions.")
    ids = [str(les.get("isic_id") or "") for les in lesions]
    for i, lid in enumerate(ids):
        if not lid:
            raise InputError(f"lesions[{i}].isic_id: missing or empty.")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"lesions: isic_id repeated: {', '.join(dup[:5])}")
    cols = columns_for("test")
    data: dict[str, list[Any]] = {c: [] for c in cols}
    for i, les in enumerate(lesions):
        where = f"lesions[{i}]"
        for key in les:
            if key != "isic_id" and key not in METADATA:
                raise InputError(f"{where}: unknown field {key!r} (the test file's columns: "
                                 "data.schema)")
        for c in cols:
            data[c].append(_value(c, les.get(c), where) if c not in IDS else None)
    data["isic_id"], data["patient_id"] = ids, [patient_id] * len(ids)
    return pl.DataFrame(data, schema={c: BY_NAME[c].dtype for c in cols})


def unseen_levels(row: dict[str, Any], known: dict[str, set[str]] | None = None) -> list[str]:
    """Categorical values of ``row`` that training never had (scored, but flagged): ``known``
    is the bundle's reference levels; without one, the competition data's."""
    levels = known if known is not None else {c: set(v) for c, v in LEVELS.items()}
    return [f"{c}={v!r} was not seen in training" for c, v in row.items()
            if v is not None and c in levels and v not in levels[c]]

