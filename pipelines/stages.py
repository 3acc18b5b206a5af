"""The ``isic`` stages: which module runs each one, which light module holds its config class,
and which YAML configures it. Read by the command line (``cli``) and by the chain runner
(``chain_run``), which runs a declared run through the same resolution as ``isic <stage>``.

A stage's config class lives in its room's ``config`` module, which imports no model library:
``isic <stage> --help`` and ``--print-config`` import it alone (:func:`config_class`); the run
module (torch, a GBDT library, Gradio) is imported only to run the stage (:func:`resolve`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from isicstack.settings.layers import load_config


@dataclass(frozen=True)
class Stage:
    """Where a stage's ``run`` and config class live, which YAML configures it, its help line."""

    run: str  # module whose ``run(cfg)`` runs the stage (imported only to run it)
    config: str  # ``module:Class`` of the config dataclass, in a light ``<room>.config`` module
    yaml: str  # configs/<yaml>.yaml
    help: str  # one line: the stage in ``isic --help``, the description in its own


STAGES: dict[str, Stage] = {
    "synth": Stage("isicstack.synthetic.generate", "isicstack.synthetic.config:SynthConfig",
                   "synth", "generate a synthetic data set in the exact ISIC 2024 layout"),
    "folds": Stage("isicstack.data.folds", "isicstack.data.config:FoldsConfig",
                   "folds", "write artifacts/folds.parquet (patient-grouped, stratified)"),
    "train-tabular": Stage("isicstack.tabular.cv", "isicstack.tabular.config:TabularConfig",
                           "tabular", "features + LightGBM/XGBoost/CatBoost CV, OOF and test "
                           "predictions"),
    "train-image": Stage("isicstack.vision.train", "isicstack.vision.config:ImageConfig",
                         "image", "timm CNN on HDF5 crops per fold, fused with the tabular OOF "
                         "score"),
    "stack": Stage("isicstack.stacking.stack", "isicstack.stacking.config:StackConfig",
                   "stacking", "level-2 model over OOF predictions and submission.csv"),
    "predict": Stage("isicstack.inference.predict", "isicstack.inference.config:PredictConfig",
                     "predict", "offline inference from saved models on a test directory"),
    "kaggle-package": Stage("isicstack.inference.package",
                            "isicstack.inference.config:PackageConfig",
                            "package", "dist/kaggle: wheel + saved models + run_inference.py for "
                            "Kaggle"),
    "report": Stage("isicstack.evaluation.report", "isicstack.evaluation.config:ReportConfig",
                    "report", "CV table, ROC curves and score distributions"),
    "tune": Stage("isicstack.pipelines.tune", "isicstack.pipelines.config:TuneConfig",
                  "tune", "Optuna sweep of a stage for OOF pAUC (`isic tune tabular model=xgb`)"),
    "evaluate": Stage("isicstack.evaluation.evaluate", "isicstack.evaluation.config:EvaluateConfig",
                      "evaluate", "repeated CV of the tabular config over several fold seeds"),
    "predict-images": Stage("isicstack.inference.predict_images",
                            "isicstack.inference.config:PredictImagesConfig",
                            "predict_images", "score an HDF5 or JPEG folder of crops with a "
                            "saved image-only run -> isic_id,pred"),
    "ingest": Stage("isicstack.ingest.ingest", "isicstack.ingest.config:IngestConfig",
                    "ingest", "other ISIC data (JPEG folder + label CSV) -> HDF5 crops + "
                    "labels.csv"),
    "explain": Stage("isicstack.explain.explain", "isicstack.explain.config:ExplainConfig",
                     "explain", "Grad-CAM of an image-only run: one PNG per isic_id "
                     "(isic_ids=[...])"),
    "app": Stage("isicstack.app.page", "isicstack.app.config:AppConfig",
                 "app", "the clinician web page (Gradio) on 127.0.0.1:<port>"),
    "runs": Stage("isicstack.evaluation.runs_table", "isicstack.evaluation.config:RunsConfig",
                  "runs", "the tracked (MLflow) stage runs: name, stage, profile, fold hash, OOF "
                  "pAUC, when (`isic runs image` = stage=image)"),
    "calibrate": Stage("isicstack.evaluation.calibrate",
                       "isicstack.evaluation.config:CalibrateConfig",
                       "calibrate", "calibrated risk per model: prior correction + out-of-fold "
                       "map (JSON)"),
    "subgroups": Stage("isicstack.evaluation.subgroups",
                       "isicstack.evaluation.config:SubgroupsConfig",
                       "subgroups", "pAUC, AUC, sensitivity/specificity by site, sex, age, "
                       "centre, diagnosis"),
    "loco": Stage("isicstack.evaluation.loco", "isicstack.evaluation.config:LocoConfig",
                  "loco", "leave-one-centre-out CV of the tabular stage (column=attribution)"),
}


def config_class(stage: str) -> type:
    """The config dataclass of ``stage``, imported from its light module (no model library)."""
    module, _, name = STAGES[stage].config.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve(stage: str) -> tuple[type, Callable[[Any], Any]]:
    """The config class of ``stage`` and its ``run`` (the run module is imported here)."""
    return config_class(stage), importlib.import_module(STAGES[stage].run).run


def stage_config(stage: str, profile: str, overrides: list[str]) -> tuple[Any, Any]:
    """The resolved config of ``stage`` (YAML, profile, tuned file, overrides) and its ``run``."""
    cfg_cls, run = resolve(stage)
    return load_config(cfg_cls, STAGES[stage].yaml, profile, overrides), run
