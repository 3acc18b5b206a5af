"""The saved models behind the web app, loaded once and scored one upload at a time.

No web code here: :class:`Clinic` takes a decoded crop (and checked metadata) and returns the
score, the Grad-CAM overlay and the operating point. Without metadata the score is the
image-only run's (``ImagePredictor``: the path ``isic predict-images`` uses); with metadata it is
the full chain of ``isic predict`` (``resolve_models`` + the saved stacker), where the upload is
a one-lesion patient and unknown columns are null. The threshold of each model is picked on its
OOF scores at ``target_tpr`` (``calibration.operating_point``), and the sensitivity/specificity
shown are that model's OOF values there, with patient-bootstrap intervals. Where ``isic
calibrate`` saved a current map for the scoring model, the score also becomes a calibrated risk.
A one-lesion upload cannot have patient-relative features (``app.patient`` says so); a patient's
CSV is scored as one patient (:meth:`Clinic.score_patient`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from isicstack.app.patient import PatientResult, single_lesion_warning, uses_patient_context
from isicstack.app.validate import FIELDS, UPLOAD_ID, InputError, metadata_row
from isicstack.calibration import operating_point as opoint
from isicstack.calibration.config import OperatingPointConfig
from isicstack.calibration.maps import read_map
from isicstack.calibration.scores import model_scores
from isicstack.data.folds import read_folds
from isicstack.data.io import DataError
from isicstack.data.layout import run_dir
from isicstack.explain.figures import overlay, upscale
from isicstack.explain.maps import crop_maps, load_image_only
from isicstack.extras import MissingExtraError
from isicstack.inference.config import PredictConfig
from isicstack.inference.predict import STACKER_FILE
from isicstack.serving.scorer import Route, Scorer, attach_sources
from isicstack.settings.chain import image_only_run

log = logging.getLogger(__name__)


@dataclass
class Result:
    """What the page shows for one upload."""

    score: float
    model: str                     # which saved model(s) scored it
    probability: bool              # False: a rank score in [0, 1] (rank stackers)
    op: dict[str, Any] | None      # operating point of that model (None: see op_note)
    op_note: str = ""
    overlay: np.ndarray | None = None
    cam_note: str = ""
    notes: list[str] = field(default_factory=list)
    risk: float | None = None      # calibrated probability (None: see risk_note)
    risk_note: str = ""


def operating_point(artifacts: str, name: str, cfg: OperatingPointConfig
                    ) -> tuple[dict[str, Any] | None, str]:
    """Threshold and OOF rates of ``name`` at ``cfg.target_tpr``, or None and why not.

    The stack's threshold is picked on the scale ``stacker.json`` outputs (its method's own
    CV), not on the nested OOF file, whose per-fold CDF scale a scored upload never has."""
    try:
        folds = read_folds(artifacts)
        pred = model_scores(artifacts, name, folds)
        op = opoint.operating_point(folds["target"].to_numpy(), pred,
                                    folds["patient_id"].to_numpy(), cfg)
    except (FileNotFoundError, DataError, ValueError) as err:
        return None, f"no operating point for `{name}`: {err}"
    return op, ""


def bundle_op(spec: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """A bundle scorer's recorded operating point in the page's shape (no intervals: the
    bundle keeps the point, not the bootstrap)."""
    p = spec.get("operating_point")
    if not p or p.get("threshold") is None:
        return None, f"no operating point recorded for `{spec.get('name')}` in the bundle"
    return {"point": {"threshold": p["threshold"], "recall": p["tpr"],
                      "specificity": 1.0 - p["fpr"]}, "ci_low": {}, "ci_high": {},
            "rows": p.get("rows", 0), "patients": p.get("patients", 0)}, ""


class Clinic:
    """The image-only run, the stack (when its runs are there) and their operating points."""

    def __init__(self, artifacts: str, image_run: str, stacker: str, fallback: str,
                 op_cfg: OperatingPointConfig, layer: str, cpu_threads: int, bundle: str
                 ) -> None:
        """Every setting comes from the ``AppConfig`` (:func:`isicstack.app.page.load_clinic`):
        no second default here. ``bundle``: a bundle folder whose scorer (and operating points)
        the full chain uses; ``artifacts`` is then its ``artifacts/``."""
        self.artifacts, self.layer, self.bundle = artifacts, layer, bundle
        image_run = image_only_run(image_run)  # "": the chain's image-only run
        self.lock = threading.Lock()
        self.image = load_image_only(artifacts, image_run, None, "cpu", cpu_threads)
        self.image_sources = attach_sources([self.image])
        self.image_op = (None, f"no operating point for `{image_run}`: a bundle records those of "
                         "its scorers only (add metadata to use them)") if bundle else \
            operating_point(artifacts, image_run, op_cfg)
        self.image_cal = read_map(artifacts, image_run)
        self.stack: Any = None
        self.stack_error = ""
        try:
            self._load_stack(stacker, fallback, cpu_threads, op_cfg)
        except (FileNotFoundError, ValueError, KeyError, DataError) as err:
            self.stack_error = str(err)
            log.warning("app: the full stack is not available: %s", err)

    def _load_stack(self, stacker: str, fallback: str, cpu_threads: int,
                    op_cfg: OperatingPointConfig) -> None:
        """The full chain through the deployed model's scorer (``serving.scorer``), flagged at
        the operating point picked on its OOF scores (a bundle's: those it recorded)."""
        if self.bundle:
            self.scorer = Scorer.from_bundle(self.bundle, cpu_threads)
            self.stack = {"route": self.scorer.routes["full"], "name": self.scorer.version,
                          "ops": {k: bundle_op(spec) for k, spec
                                  in self.scorer.manifest["scorers"].items()},
                          "patient_context": uses_patient_context(
                              self.scorer.routes["full"].predictors)}
            return
        pcfg = PredictConfig(artifacts=self.artifacts, stacker=stacker, fallback=fallback,
                             accelerator="cpu", num_workers=0, cpu_threads=cpu_threads,
                             image_batch_size=8)
        has_stack = bool(stacker) and (run_dir(self.artifacts, stacker) / STACKER_FILE).is_file()
        op = operating_point(self.artifacts, stacker if has_stack else fallback, replace(op_cfg))
        self.scorer = Scorer.from_artifacts(pcfg, op[0]["point"]["threshold"] if op[0] else None)
        route = self.scorer.routes["full"]
        self.stack = {"route": route, "name": route.name, "ops": {"full": op},
                      "patient_context": uses_patient_context(route.predictors)}

    def score(self, image: np.ndarray, meta: dict[str, Any] | None) -> Result:
        """Score one crop: image-only without metadata, the full stack with it."""
        with self.lock:
            for src in self.image_sources:
                src.put({UPLOAD_ID: image})
            result = self._stacked(image, meta) if meta else self._image_only()
            result.overlay, result.cam_note = self._overlay()
            return result

    def _image_only(self) -> Result:
        prob = float(self.image.predict(pl.DataFrame({"isic_id": [UPLOAD_ID]}), {})[0])
        op, note = self.image_op
        n = len(self.image.nets)
        cal, why = self.image_cal
        return Result(prob, f"image-only run `{self.image.name}` (mean of {n} fold "
                      f"model{'s' if n > 1 else ''})", True, op, note,
                      risk=None if cal is None else float(cal.apply(np.array([prob]))[0]),
                      risk_note=why)

    def _stacked(self, image: np.ndarray, meta: dict[str, Any]) -> Result:
        if self.stack is None:
            result = self._image_only()
            result.notes.append(f"Metadata ignored: the full stack is not available "
                                f"({self.stack_error}).")
            return result
        values, risks, what, prob, route = self._stack_scores(metadata_row(meta),
                                                              {UPLOAD_ID: image})
        op, note = self.stack["ops"][route.key]
        missing = len(FIELDS) - len(meta)
        notes = [f"Metadata: {len(meta)} field(s) given, {missing} of the form left empty; every "
                 "other column is unknown (null)."]
        if route.key == "full" and self.stack["patient_context"]:
            notes.append(single_lesion_warning(1))
        return Result(float(values[0]), what, prob, op, note, notes=notes,
                      risk=None if risks is None else float(risks[0]), risk_note=route.cal_note)

    def _stack_scores(self, rows: pl.DataFrame, crops: dict[str, np.ndarray]
                      ) -> tuple[np.ndarray, np.ndarray | None, str, bool, Route]:
        """The scorer's scores and risks of ``rows`` (one patient), what scored them, whether
        the score is a probability, and the route (a bundle scores a patient with few lesions
        by its model without patient-context features)."""
        scored = self.scorer.score(rows, crops)
        route = self.scorer.routes[scored[0].scorer]
        values = np.array([s.score for s in scored])
        risks = None if scored[0].risk is None else np.array([s.risk for s in scored])
        st = route.stacker
        if route.key == "solo":
            return values, risks, (f"`{route.name}`, the model without patient-context "
                                   f"features (this patient has fewer than "
                                   f"{route.max_lesions} lesions)"), True, route
        if st is None:
            return values, risks, f"`{route.name}`", True, route
        what = f"stack `{route.name}` ({st.method} over {', '.join(st.inputs)})"
        return values, risks, what, st.method == "logistic", route

    def score_patient(self, rows: pl.DataFrame, crops: dict[str, np.ndarray]) -> PatientResult:
        """Every lesion of one patient through the full chain, together (patient features)."""
        if self.stack is None:
            raise InputError(f"The full stack is not available ({self.stack_error}), so a "
                             "patient's CSV cannot be scored.")
        with self.lock:
            values, risks, what, _, route = self._stack_scores(rows, crops)
        op, note = self.stack["ops"][route.key]
        single = route.key == "full" and self.stack["patient_context"]
        notes = [n for n in (single_lesion_warning(rows.height) if single else "",
                             route.cal_note, note) if n]
        return PatientResult(rows["isic_id"].to_list(), values, risks, what,
                             op["point"]["threshold"] if op else None, notes)

    def needs_crops(self) -> bool:
        """Whether the full chain has image models (a patient CSV then needs its crops)."""
        return bool(self.stack and self.scorer.needs_crops)

    def _overlay(self) -> tuple[np.ndarray | None, str]:
        try:
            cam = crop_maps(self.image, [UPLOAD_ID], self.layer)[0]
        except MissingExtraError as err:
            return None, f"No heatmap: {err}"
        crop = self.image.source.image(UPLOAD_ID)
        return upscale(overlay(crop, cam), 320), (
            f"Grad-CAM of `{self.image.name}` (mean over its fold models): red regions raised "
            "the image score.")
