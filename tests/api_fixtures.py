"""The API tests' model and requests: a bundle (``isic bundle``'s builder) of the clinic fixture
runs (tests/app_fixtures.py), and test patients' lesions as the API takes them.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.data.crops import CropStore
from isicstack.data.io import load_metadata


def make_bundle(art: Path, data: Path, out: Path) -> Path:
    """``out``: the bundle of ``art``'s runs (``isic bundle``: its stack as the full scorer, no
    solo run, not registered; reference statistics on a small sample of ``data``)."""
    from isicstack.serving.bundle import run as bundle
    from isicstack.serving.config import BundleConfig

    return bundle(BundleConfig(data_dir=str(data), artifacts=str(art), out_dir=str(out),
                               solo="", sample=200, register="off"))


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
