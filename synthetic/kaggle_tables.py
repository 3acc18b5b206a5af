"""The Kaggle-formatted tables of simulated rows (``train-metadata.csv``, ``test-metadata.csv``).

Kept apart from ``generate.py``, which tells the generative story: here the simulated columns
become the competition's exact layout, with its missingness (age, sex, site) and the train-only
columns (target, lesion ids, diagnoses).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from isicstack.data.schema import LEVELS, TEST_COLUMNS, TRAIN_COLUMNS
from isicstack.synthetic.levels import HOSPITALS, LOC_NAMES, SIMPLE, SITE


def kaggle_frame(c: dict, rows: np.ndarray, rng: np.random.Generator, split: str) -> pl.DataFrame:
    """Kaggle-formatted frame of ``rows`` with real missingness (age, sex, site)."""
    n = len(rows)
    n_all = len(c["pid"])
    pick = {k: v[rows] for k, v in c.items() if isinstance(v, np.ndarray) and len(v) == n_all}
    miss_p = rng.random((2, int(c["pid"].max()) + 1))
    age = np.where((miss_p[0][pick["pid"]] < 0.005) | (rng.random(n) < 0.002), np.nan,
                   pick["age_approx"])
    sex = np.where(pick["male"], "male", "female").astype(object)
    sex[(miss_p[1][pick["pid"]] < 0.025) | (rng.random(n) < 0.004)] = None
    no_site = rng.random(n) < 0.014
    loc = np.asarray(LOC_NAMES, dtype=object)[pick["loc"]]
    site = np.asarray(SITE, dtype=object)[pick["loc"]]
    simple = np.asarray(SIMPLE, dtype=object)[pick["loc"]]
    site[no_site], loc[no_site], simple[no_site] = None, "Unknown", "Unknown"
    hosp = np.asarray(LEVELS["attribution"], dtype=object)[pick["hosp"]]
    lic = np.asarray([h[1] for h in HOSPITALS.values()], dtype=object)[pick["hosp"]]
    cols: dict[str, pl.Series] = {
        "isic_id": _str(pick["isic_id"]),
        "patient_id": _str(pick["patient_id"]),
        "age_approx": pl.Series(age).fill_nan(None),
        "sex": _str(sex),
        "anatom_site_general": _str(site),
        "clin_size_long_diam_mm": pl.Series(pick["clin_size_long_diam_mm"]),
        "image_type": pl.repeat(LEVELS["image_type"][0], n, eager=True),
        "tbp_tile_type": pl.Series(np.where(pick["white"], "3D: white", "3D: XP")),
        "tbp_lv_location": _str(loc),
        "tbp_lv_location_simple": _str(simple),
        "tbp_lv_symm_2axis_angle": pl.Series(pick["tbp_lv_symm_2axis_angle"].astype(np.int64)),
        "attribution": _str(hosp),
        "copyright_license": _str(lic),
    }
    if split == "train":
        cols["target"] = pl.Series(pick["target"], dtype=pl.Int8)
        for k in ("lesion_id", "iddx_full", "mel_mitotic_index"):
            cols[k] = pl.Series(pick[k].tolist(), dtype=pl.String)
        cols["mel_thick_mm"] = pl.Series(pick["mel_thick_mm"]).fill_nan(None)
        cols["tbp_lv_dnn_lesion_confidence"] = pl.Series(
            np.round(pick["tbp_lv_dnn_lesion_confidence"], 6))
        parts = cols["iddx_full"].str.split("::")
        for i in range(5):
            cols[f"iddx_{i + 1}"] = parts.list.get(i, null_on_oob=True)
    for k in TRAIN_COLUMNS:
        if k not in cols and k.startswith("tbp_lv_"):
            cols[k] = pl.Series(np.round(pick[k], 6))
    names = TRAIN_COLUMNS if split == "train" else TEST_COLUMNS
    return pl.DataFrame([cols[k].alias(k) for k in names])


def _str(a: np.ndarray) -> pl.Series:
    """A String series from a numpy object array (polars cannot cast Object columns)."""
    return pl.Series(a.tolist(), dtype=pl.String)
