"""One patient's lesions scored together, and the one-lesion warning.

The tabular models compare each lesion with the patient's other lesions (z-scores within the
patient and body region, within-patient ranks, lesion counts: the "ugly duckling" features);
the fused CNN reads its tabular input the same way. An upload alone is a one-lesion patient, a
case no training patient of the real data looks like, so the page says so, with how far the
score moved on held-out data (``benchmarks/bench_single_lesion.py``), and accepts a CSV of the
patient's lesions (test-metadata columns) plus their crops to score them together.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.app.validate import UPLOAD_PATIENT, InputError, read_upload
from isicstack.data.io import NULL_VALUES
from isicstack.data.schema import BY_NAME, columns_for
from isicstack.serving.manifest import RESEARCH_USE as NOTICE

PATIENT_GROUPS = ("patient", "ugly_duckling")
MEASURED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "single_lesion.json"


def uses_patient_context(predictors: list[Any]) -> bool:
    """True when any predictor's features compare a lesion with the patient's other lesions."""
    for p in predictors:
        groups = getattr(getattr(getattr(p, "cfg", None), "features", None), "groups", [])
        if set(groups) & set(PATIENT_GROUPS) or getattr(p, "fusion", None) is not None:
            return True
    return False


def measured_shift(path: Path = MEASURED) -> str:
    """The held-out shift of a lesion scored alone, as a sentence (read from the benchmark's
    results in a checkout; an installed wheel has none of them, so it points to them)."""
    if not path.is_file():
        return (" How far this moves a score was measured on held-out lesions: the project's "
                "BENCHMARKS.md, `benchmarks/bench_single_lesion.py`.")
    try:
        s = json.loads(path.read_text(encoding="utf-8"))["summary"]
        return (f" Measured on {s['lesions']:,} held-out {s['data']} lesions "
                f"(`benchmarks/bench_single_lesion.py`): scored alone, a lesion's calibrated "
                f"risk moved by a median of {100 * s['risk_abs_median']:.2f} percentage points "
                f"(90th percentile {100 * s['risk_abs_p90']:.2f}) from its risk inside its real "
                f"patient, and {100 * s['flag_changed']:.1f}% crossed the review threshold.")
    except (KeyError, TypeError, ValueError):
        return ""


def single_lesion_warning(lesions: int) -> str:
    """The page's warning for a patient of ``lesions`` rows (one: features not computable)."""
    if lesions > 1:
        return ""
    return ("**Single lesion:** the patient-relative features (this lesion compared with the "
            "patient's other lesions: ugly-duckling z-scores, within-patient ranks, lesion "
            "counts) cannot be computed from one lesion; they take the values of a one-lesion "
            "patient, unlike the training patients, so the score is less reliable."
            + measured_shift() + " Upload the patient's lesions as a CSV to score them together.")


def read_patient_csv(path: str | os.PathLike[str] | None, max_rows: int
                     ) -> tuple[pl.DataFrame, list[str]]:
    """One patient's lesions as test-schema rows, and the columns ignored (not in the test file).

    Every test column is optional (missing: null, the models' NaN); values must parse as their
    schema type; ``isic_id`` is required and unique; ``patient_id``, when given, is one value.
    """
    if path is None:
        raise InputError("Upload a CSV of the patient's lesions first.")
    name = Path(path).name
    try:
        raw = pl.read_csv(path, infer_schema=False, null_values=NULL_VALUES)
    except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as err:
        raise InputError(f"{name}: not a readable CSV ({type(err).__name__}).") from err
    if "isic_id" not in raw.columns:
        raise InputError(f"{name}: no isic_id column (one row per lesion, named by isic_id).")
    if not 1 <= raw.height <= max_rows:
        raise InputError(f"{name}: {raw.height} rows; a patient's CSV holds 1 to {max_rows}.")
    ids = raw["isic_id"]
    if ids.null_count() or ids.is_duplicated().any():
        raise InputError(f"{name}: isic_id must be filled in and unique on every row.")
    if "patient_id" in raw.columns and raw["patient_id"].n_unique() > 1:
        raise InputError(f"{name}: {raw['patient_id'].n_unique()} patient_id values; upload "
                         "one patient's lesions at a time.")
    cols = columns_for("test")
    out = {}
    for col in cols:
        dtype = BY_NAME[col].dtype
        if col not in raw.columns:
            out[col] = pl.Series(col, [None] * raw.height, dtype=dtype)
            continue
        cast = raw[col].cast(dtype, strict=False)
        if cast.null_count() != raw[col].null_count():
            bad = int(np.flatnonzero((cast.is_null() & raw[col].is_not_null()).to_numpy())[0])
            raise InputError(f"{name}: column {col!r}, lesion {ids[bad]}: "
                             f"{raw[col][bad]!r} is not a {dtype}.")
        out[col] = cast
    out["patient_id"] = pl.Series("patient_id", [UPLOAD_PATIENT] * raw.height)
    ignored = [c for c in raw.columns if c not in cols]
    return pl.DataFrame(out).select(cols), ignored


def crops_by_id(paths: list[str] | None, ids: list[str], max_pixels: int, need: bool
                ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Uploaded crops keyed by file stem (= isic_id); notes on crops named for no lesion."""
    crops = {Path(p).stem: read_upload(p, max_pixels) for p in paths or []}
    missing = [i for i in ids if i not in crops]
    if need and missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(f"No crop for {len(missing)} lesion(s) ({shown}): the image models "
                         "need one per CSV row, as files named <isic_id>.jpg or .png.")
    extra = sorted(set(crops) - set(ids))
    notes = [f"{len(extra)} crop(s) named for no CSV row were ignored: {', '.join(extra[:5])}"
             ] if extra else []
    return {i: crops[i] for i in ids if i in crops}, notes


@dataclass
class PatientResult:
    """The scores of one patient's lesions (CSV order) and how they were made."""

    ids: list[str]
    scores: np.ndarray
    risks: np.ndarray | None
    model: str
    threshold: float | None
    notes: list[str] = field(default_factory=list)


def render_patient(res: PatientResult, top: int = 50) -> str:
    """Markdown: lesions by decreasing score, with risk and whether each is flagged."""
    order = np.argsort(-res.scores, kind="stable")
    has_risk = res.risks is not None
    lines = [f"### {len(res.ids)} lesion(s) of one patient, scored together",
             f"Scored by the {res.model}.", "",
             "| lesion | score | " + ("calibrated risk | " if has_risk else "") + "review |",
             "|---|---:|" + ("---:|" if has_risk else "") + "---|"]
    for i in order[:top]:
        flag = ("—" if res.threshold is None else
                "**flag**" if res.scores[i] >= res.threshold else "")
        risk = f" {100 * res.risks[i]:.2f} % |" if has_risk else ""
        lines.append(f"| {res.ids[i]} | {res.scores[i]:.4f} |{risk} {flag} |")
    if len(res.ids) > top:
        lines.append(f"\n({len(res.ids) - top} lower-scored lesion(s) not shown.)")
    return "\n".join([*lines, "", *res.notes, "", f"_{NOTICE[0].upper()}{NOTICE[1:]}._"])
