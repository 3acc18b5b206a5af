"""The API's request and answer types: named, typed fields, so the OpenAPI page documents them
and a malformed request is a 422 naming the field before any model sees it.

A lesion's metadata fields are the test file's columns (``data.schema``), each optional; a
category is any string (a level training never had is scored with a warning, and counted by
``isic monitor``). The crop is the JPEG or PNG file, base64-encoded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from isicstack.data.schema import BY_NAME
from isicstack.serving.inputs import METADATA


def _metadata_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in METADATA:
        kind = float if BY_NAME[name].kind == "numeric" else str
        fields[name] = (kind | None, Field(default=None, allow_inf_nan=False)
                        if kind is float else None)
    return fields


_Strict = ConfigDict(extra="forbid")

Lesion = create_model(  # type: ignore[call-overload]
    "Lesion", __config__=_Strict, __doc__="One lesion: its id, its crop and its metadata.",
    isic_id=(str, Field(min_length=1, max_length=200, description="the lesion's id")),
    crop=(str, Field(min_length=1, description="the crop: a JPEG or PNG file, base64")),
    **_metadata_fields())


class ScoreRequest(BaseModel):
    """One patient's lesions, scored together (the features compare each with the others)."""

    model_config = _Strict
    patient_id: str = Field(min_length=1, max_length=200,
                            description="logged as a keyed hash, never as given")
    lesions: list[Lesion] = Field(min_length=1)  # type: ignore[valid-type]


class LesionAnswer(BaseModel):
    """One lesion's answer."""

    isic_id: str
    risk: float | None = Field(description="calibrated probability of malignancy (None: the "
                               "model has no calibration map; see warnings)")
    score: float = Field(description="the model's raw score, the scale of its threshold")
    flag: bool | None = Field(description="refer for review: score at or above the "
                              "operating point (None: no operating point)")
    scorer: Literal["full", "solo"] = Field(
        description="full: the submitted chain; solo: the model without patient-context "
        "features, for patients with few lesions in the request")
    model: str
    model_version: str
    request_id: str
    warnings: list[str]


class ScoreAnswer(BaseModel):
    """The answer to one request."""

    request_id: str
    model_version: str
    notice: str
    lesions: list[LesionAnswer]


class Outcome(BaseModel):
    """The verified diagnosis of a scored lesion (a biopsy, or a random audit's)."""

    model_config = _Strict
    isic_id: str = Field(min_length=1, max_length=200)
    malignant: bool
    reason: Literal["biopsy", "audit"] = Field(
        default="biopsy", description="audit: verified because it was sampled at random, "
        "not because it was flagged (the monitor corrects for verification bias with these)")


class OutcomeAnswer(BaseModel):
    isic_id: str
    recorded: int = Field(description="outcome rows written")
    outcome_id: int = Field(description="the outcome's row in the prediction log")
