"""The bundle as an MLflow pyfunc model, written as "models from code": MLflow runs this file
when the registered model is loaded (``mlflow.pyfunc.load_model("models:/isicstack@champion")``),
so the model is this code plus the bundle folder (its artifact ``bundle``), not a pickle.

The scorer is imported when a model is loaded, not when this file is registered: the registry
(``serving/registry.py``) copies this file without running the scorer's model libraries.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl

from isicstack.data.crops import decode_jpeg

CROP_COLUMN = "crop"  # optional column of JPEG bytes per row


class BundleModel(mlflow.pyfunc.PythonModel):
    """``predict`` scores a frame of whole patients (test-file columns, optional ``crop``
    bytes) with ``isicstack.serving.scorer.Scorer``, one row per lesion."""

    def load_context(self, context: Any) -> None:
        from isicstack.serving.scorer import Scorer  # the scorer's model libraries: at load

        self.scorer = Scorer.from_bundle(context.artifacts["bundle"])

    # model_input unannotated: MLflow reads a hint as the input schema (and wants list[...])
    def predict(self, context: Any, model_input, params: dict | None = None) -> Any:
        rows = pl.from_pandas(pd.DataFrame(model_input))
        crops: dict[str, np.ndarray] = {}
        if CROP_COLUMN in rows.columns:
            crops = {i: decode_jpeg(bytes(b)) for i, b in
                     zip(rows["isic_id"].to_list(), rows[CROP_COLUMN].to_list(), strict=True)
                     if b is not None}
            rows = rows.drop(CROP_COLUMN)
        scored = self.scorer.score(rows, crops)
        return pd.DataFrame([s if isinstance(s, dict) else dataclasses.asdict(s)
                             for s in scored])


mlflow.models.set_model(BundleModel())
