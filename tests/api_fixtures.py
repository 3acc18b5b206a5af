"""A model bundle for the API tests, made from the clinic fixture runs (tests/app_fixtures.py):
the Kaggle packager's files plus a ``bundle.json`` naming the stack and its operating point
(sensitivity 0.8 on the OOF scores), the layout ``serving.scorer`` reads.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.data.crops import CropStore
from isicstack.data.io import load_metadata


def make_bundle(art: Path, out: Path) -> Path:
    """``out``: a bundle folder over the runs of ``art`` (its stack as the full scorer)."""
    from isicstack.calibration.operating_point import threshold_at_tpr
    from isicstack.calibration.scores import model_scores
    from isicstack.data.folds import read_folds
    from isicstack.inference.config import PackageConfig
    from isicstack.inference.package import run as package

    package(PackageConfig(artifacts=str(art), out_dir=str(out), wheel=False))
    folds = read_folds(art)
    oof = model_scores(art, "stack", folds)
    threshold = threshold_at_tpr(folds["target"].to_numpy(), oof, 0.8)
    doc = {"format": 1, "name": "isicstack", "version": "test-0001", "stacker": "logistic",
           "models": ["lgbm", "vision_imgonly"],
           "scorers": {"full": {"name": "stack", "operating_point": {
               "target_tpr": 0.8, "threshold": threshold,
               "review_rate": float((oof >= threshold).mean())}, "calibrated": True}}}
    (out / "bundle.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return out


def lesions_of(data: Path, patient: str | None = None, n: int | None = None
               ) -> tuple[str, list[dict[str, Any]]]:
    """A test patient's lesions as the API takes them: metadata columns + base64 crop (the
    crop's own JPEG bytes). The patient with most lesions unless ``patient`` is named."""
    test = load_metadata(data / "test-metadata.csv", "test")
    if patient is None:
        patient = test["patient_id"].value_counts(sort=True)["patient_id"][0]
    rows = test.filter(pl.col("patient_id") == patient)
    if n is not None:
        rows = rows.head(n)
    out = []
    with CropStore(data / "test-image.hdf5") as store:
        for row in rows.drop("patient_id").to_dicts():
            crop = base64.b64encode(store.read_bytes(row["isic_id"])).decode()
            out.append({**{k: v for k, v in row.items() if v is not None}, "crop": crop})
    return str(patient), out
