"""The one scoring object of a deployed model: a bundle loaded once, patients scored on request.

The HTTP API (``isic serve``), the web page and the registry's MLflow model all score through
:class:`Scorer`, so a lesion gets the same answer whichever door it came through. It runs the
predict path of ``isic predict`` (``inference.predict``: the saved runs, the stacker, the
calibration maps) on crops held in memory instead of an HDF5 file.

Two routes (the bundle's ``scorers``): ``full`` is the submitted chain, whose features compare a
lesion with the patient's other lesions; ``solo``, when the bundle has it, is a GBDT trained
without those features. A patient with fewer than ``max_lesions`` lesions in a request is scored
by ``solo`` (scored alone, a lesion's patient-relative features are those of a one-lesion
patient, unlike every training patient: BENCHMARKS, single lesion). Each answer names its route,
model and bundle version; the flag is the route's operating point, picked on its OOF scores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.calibration.maps import CalMap, read_map
from isicstack.data.colour import shades_of_gray
from isicstack.inference.config import PredictConfig
from isicstack.inference.predict import (
    Predictor,
    load_predictors,
    load_stacker,
    make_factory,
    score_all,
    share_image_passes,
)
from isicstack.serving.manifest import REFERENCE_FILE, RESEARCH_USE, verify
from isicstack.serving.registry import resolve
from isicstack.settings.layers import load_config
from isicstack.stacking.methods import Stacker

log = logging.getLogger(__name__)

NOTICE = RESEARCH_USE  # said in every answer and on the page


class CropSource:
    """Crops held in memory as an image source (``keys``/``image``), which ImagePredictor
    reads in place of an HDF5 file; colour constancy as the run was trained with."""

    path = Path("<memory>")

    def __init__(self, color_constancy: bool = False) -> None:
        self.color_constancy = color_constancy
        self.crops: dict[str, np.ndarray] = {}

    def put(self, crops: dict[str, np.ndarray]) -> None:
        self.crops = dict(crops)

    def keys(self) -> list[str]:
        return list(self.crops)

    def image(self, isic_id: str) -> np.ndarray:
        img = self.crops[isic_id]
        return shades_of_gray(img) if self.color_constancy else img


def attach_sources(predictors: list[Any]) -> list[CropSource]:
    """Give every image predictor an in-memory crop source (with its run's colour constancy)."""
    sources = []
    for p in predictors:
        if hasattr(p, "nets"):
            p.images = CropSource(p.cfg.data.color_constancy)
            sources.append(p.images)
    return sources


@dataclass
class Route:
    """One scorer of a bundle: its predictors, stacker, calibration map and operating point."""

    key: str                     # full | solo
    name: str                    # the stack run or the single model scored
    predictors: list[Predictor]
    stacker: Stacker | None
    threshold: float | None
    cal: CalMap | None
    cal_note: str = ""
    max_lesions: int = 0         # solo: patients with fewer lesions than this

    def raw(self, rows: pl.DataFrame, batch_rows: int) -> np.ndarray:
        """The route's score of ``rows`` (whole patients), on the scale its threshold uses."""
        scores, _, _ = score_all(rows, self.predictors, batch_rows)
        if self.stacker is None:
            return scores[self.name]
        return self.stacker.predict(np.column_stack([scores[n] for n in self.stacker.inputs]))

    @property
    def needs_crops(self) -> bool:
        return any(hasattr(p, "nets") for p in self.predictors)


@dataclass
class LesionScore:
    """One lesion's answer."""

    isic_id: str
    patient_id: str
    score: float                 # the route's raw score (its threshold's scale)
    risk: float | None           # calibrated probability (None: the route has no map)
    flag: bool | None            # score at or above the operating point (None: no point)
    scorer: str                  # full | solo
    model: str
    version: str
    warnings: list[str] = field(default_factory=list)


def bundle_predict_config(folder: Path, cpu_threads: int) -> PredictConfig:
    """The bundle's PredictConfig (its ``predict.yaml``, read as the Kaggle script reads the
    package's), pointed at its own artifacts, on CPU in this process."""
    return load_config(PredictConfig, "predict", "default", [
        f"artifacts={folder / 'artifacts'}", "accelerator=cpu", "num_workers=0",
        f"cpu_threads={cpu_threads}"], config_dir=folder, use_tuned=False)


class Scorer:
    """A bundle loaded once; :meth:`score` scores patients' lesions (not thread-safe: one
    caller at a time, e.g. the API's batching thread or the page's lock)."""

    def __init__(self, manifest: dict[str, Any], pcfg: PredictConfig,
                 reference: dict[str, Any] | None = None, batch_rows: int = 50_000) -> None:
        """``manifest``: a bundle.json (its version and scorers); ``pcfg``: the predict
        config, its ``artifacts`` the run files. Use :meth:`from_bundle` or
        :meth:`from_artifacts`."""
        self.manifest, self.pcfg = manifest, pcfg
        self.version: str = manifest["version"]
        self.reference = reference or {}
        self.batch_rows = batch_rows
        self._loaded: dict[str, Predictor] = {}  # one load of a model both routes read
        self._make: Callable[[str], Predictor] = make_factory(
            pcfg, None)  # type: ignore[arg-type]
        self.routes = {k: self._route(k, spec) for k, spec in manifest["scorers"].items()}
        seen: list[Any] = []
        for r in self.routes.values():
            seen += [p for p in r.predictors if p not in seen]
        self.sources = attach_sources(seen)
        log.info("scorer: model %s (%s)", self.version, ", ".join(
            f"{k}: {r.name}" for k, r in self.routes.items()))

    @classmethod
    def from_bundle(cls, ref: str | Path, cpu_threads: int = 0,
                    artifacts: str | Path = "artifacts") -> Scorer:
        """A bundle folder or a registry URI (``models:/isicstack@champion``, in the registry
        of ``artifacts``' ledger), every file checked against its SHA-256 in bundle.json."""
        folder = resolve(ref, artifacts)
        manifest = verify(folder)
        path = folder / REFERENCE_FILE
        reference = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        return cls(manifest, bundle_predict_config(folder, cpu_threads), reference)

    @classmethod
    def from_artifacts(cls, pcfg: PredictConfig, threshold: float | None) -> Scorer:
        """The saved runs of ``pcfg.artifacts`` as they are, before any bundle: the stacker
        (else ``fallback``) alone, flagged at ``threshold`` (the web page on ``artifacts``)."""
        stacker = load_stacker(pcfg)
        name = pcfg.stacker if stacker else pcfg.fallback
        manifest = {"version": f"runs in {pcfg.artifacts}",
                    "stacker": stacker.method if stacker else None,
                    "scorers": {"full": {"name": name,
                                         "operating_point": {"threshold": threshold}}}}
        return cls(manifest, pcfg)

    def _factory(self, name: str) -> Predictor:
        if name not in self._loaded:
            self._loaded[name] = self._make(name)
        return self._loaded[name]

    def _route(self, key: str, spec: dict[str, Any]) -> Route:
        name = spec["name"]
        stacker = None
        if key == "full" and self.manifest.get("stacker"):
            stacker = load_stacker(replace(self.pcfg, stacker=name))
        names = list(stacker.inputs) if stacker else [name]
        predictors = share_image_passes(names, load_predictors(names, self._factory))
        op = spec.get("operating_point") or {}
        cal, why = read_map(self.pcfg.artifacts, name)
        return Route(key, name, predictors, stacker, op.get("threshold"), cal, why,
                     int(spec.get("max_lesions", 0)))

    @property
    def needs_crops(self) -> bool:
        """Whether any route reads crops (a request then needs one per lesion)."""
        return any(r.needs_crops for r in self.routes.values())

    def known_levels(self) -> dict[str, set[str]] | None:
        """The categories of the training data (reference statistics), or None."""
        cats = self.reference.get("categorical")
        return {c: set(v.get("fractions", {})) for c, v in cats.items()} if cats else None

    def route_of(self, lesions: int) -> Route:
        """The route of a patient with ``lesions`` lesions in the request."""
        solo = self.routes.get("solo")
        return solo if solo is not None and lesions < solo.max_lesions else self.routes["full"]

    def score(self, rows: pl.DataFrame, crops: dict[str, np.ndarray]) -> list[LesionScore]:
        """Every lesion of ``rows`` (test schema; several patients allowed: each is scored as
        a whole), in input order. ``crops``: ``{isic_id: RGB uint8}``, one per row."""
        for src in self.sources:
            src.put(crops)
        counts = rows.group_by("patient_id").len()
        count = dict(zip(counts["patient_id"].to_list(), counts["len"].to_list(), strict=True))
        keys = np.array([self.route_of(count[p]).key for p in rows["patient_id"].to_list()])
        out: list[LesionScore | None] = [None] * rows.height
        for key in dict.fromkeys(keys.tolist()):
            route = self.routes[key]
            idx = np.flatnonzero(keys == key)
            part = rows[idx]
            raw = route.raw(part, self.batch_rows)
            risk = route.cal.apply(raw) if route.cal is not None else None
            for j, i in enumerate(idx):
                out[i] = self._answer(route, part, j, float(raw[j]),
                                      None if risk is None else float(risk[j]),
                                      count[part["patient_id"][j]])
        return [o for o in out if o is not None]

    def _answer(self, route: Route, rows: pl.DataFrame, j: int, raw: float,
                risk: float | None, lesions: int) -> LesionScore:
        warnings = []
        if route.key == "solo":
            warnings.append(f"scored by the model without patient-context features "
                            f"(`{route.name}`): the patient has {lesions} lesion(s) in this "
                            f"request, fewer than {route.max_lesions}")
        elif lesions == 1:
            warnings.append("single lesion: the patient-relative features take the values "
                            "of a one-lesion patient, unlike the training patients")
        if route.threshold is None:
            warnings.append(f"no operating point for `{route.name}`: no review flag")
        if route.cal is None:
            warnings.append(f"no calibrated risk: {route.cal_note}")
        return LesionScore(rows["isic_id"][j], rows["patient_id"][j], raw, risk,
                           None if route.threshold is None else bool(raw >= route.threshold),
                           route.key, route.name, self.version, warnings)
