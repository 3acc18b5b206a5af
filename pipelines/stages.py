"""The ``isic`` stages: where each one's config class and ``run`` live, and which YAML
configures it. Read by the command line (``cli``) and by the chain runner (``chain_run``), which
runs a declared run through the same resolution as ``isic <stage>``.

What ``run(cfg)`` returns, by kind of stage:

- writes run folders (``train-tabular``, ``train-image``, ``stack``, ``calibrate``):
  ``list[RunResult]`` (:mod:`isicstack.ledger.result`), one per folder written, as its
  ``metrics.json`` holds it;
- writes one document (``report``, ``evaluate``, ``subgroups``, ``loco``, ``explain``,
  ``predict``, ``ingest``): that document as the dict written to its JSON file
  (``report.json``, ...), so a caller reads what a later reader of the file reads;
  ``predict-images`` (a CSV): the dict it logs (``out``, ``rows``, ``seconds``);
- writes one file or folder (``synth``, ``folds``, ``kaggle-package``): its ``Path``;
- ``tune``: the ``optuna.Study`` (its trials are the result; Optuna's own type);
- ``runs``: the table's rows; ``app``: nothing (it serves until stopped).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from isicstack.settings.layers import load_config


@dataclass(frozen=True)
class Stage:
    """Where a stage's config class and ``run`` live, and which YAML configures it."""

    module: str
    config_class: str
    yaml: str
    help: str


STAGES: dict[str, Stage] = {
    "synth": Stage("isicstack.synthetic.generate", "SynthConfig", "synth",
                   "generate a synthetic data set in the exact ISIC 2024 layout"),
    "folds": Stage("isicstack.data.folds", "FoldsConfig", "folds",
                   "write artifacts/folds.parquet (patient-grouped, stratified)"),
    "train-tabular": Stage("isicstack.tabular.cv", "TabularConfig", "tabular",
                           "features + LightGBM/XGBoost/CatBoost CV, OOF and test predictions"),
    "train-image": Stage("isicstack.vision.train", "ImageConfig", "image",
                         "timm CNN on HDF5 crops per fold, fused with the tabular OOF score"),
    "stack": Stage("isicstack.stacking.stack", "StackConfig", "stacking",
                   "level-2 model over OOF predictions and submission.csv"),
    "predict": Stage("isicstack.inference.predict", "PredictConfig", "predict",
                     "offline inference from saved models on a test directory"),
    "kaggle-package": Stage("isicstack.inference.package", "PackageConfig", "package",
                            "dist/kaggle: wheel + saved models + run_inference.py for Kaggle"),
    "report": Stage("isicstack.evaluation.report", "ReportConfig", "report",
                    "CV table, ROC curves and score distributions"),
    "tune": Stage("isicstack.pipelines.tune", "TuneConfig", "tune",
                  "Optuna sweep of a stage for OOF pAUC (`isic tune tabular model=xgb`)"),
    "evaluate": Stage("isicstack.evaluation.evaluate", "EvaluateConfig", "evaluate",
                      "repeated CV of the tabular config over several fold seeds"),
    "predict-images": Stage("isicstack.inference.images", "PredictImagesConfig",
                            "predict_images", "score an HDF5 or JPEG folder of crops with a "
                            "saved image-only run -> isic_id,pred"),
    "ingest": Stage("isicstack.ingest.ingest", "IngestConfig", "ingest",
                    "other ISIC data (JPEG folder + label CSV) -> HDF5 crops + labels.csv"),
    "explain": Stage("isicstack.explain.explain", "ExplainConfig", "explain",
                     "Grad-CAM of an image-only run: one PNG per isic_id (isic_ids=[...])"),
    "app": Stage("isicstack.app.page", "AppConfig", "app",
                 "the clinician web page (Gradio) on 127.0.0.1:<port>"),
    "runs": Stage("isicstack.evaluation.runs_table", "RunsConfig", "runs",
                  "the tracked (MLflow) stage runs: name, stage, profile, fold hash, OOF pAUC, "
                  "when (`isic runs image` = stage=image)"),
    "calibrate": Stage("isicstack.evaluation.calibrate", "CalibrateConfig", "calibrate",
                       "calibrated risk per model: prior correction + out-of-fold map (JSON)"),
    "subgroups": Stage("isicstack.evaluation.subgroups", "SubgroupsConfig", "subgroups",
                       "pAUC, AUC, sensitivity/specificity by site, sex, age, centre, diagnosis"),
    "loco": Stage("isicstack.evaluation.loco", "LocoConfig", "loco",
                  "leave-one-centre-out CV of the tabular stage (column=attribution)"),
}


class StageNotBuiltError(RuntimeError):
    """A stage whose code has not landed yet."""


def resolve(stage: str) -> tuple[type, object]:
    """Import the config class and ``run`` of ``stage``; a clear error if not yet built."""
    spec = STAGES[stage]
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as err:
        if err.name and spec.module.startswith(err.name):
            raise StageNotBuiltError(
                f"stage {stage!r} is not implemented yet ({spec.module} does not exist)"
            ) from err
        raise
    return getattr(module, spec.config_class), module.run


def stage_config(stage: str, profile: str, overrides: list[str]) -> tuple[Any, Any]:
    """The resolved config of ``stage`` (YAML, profile, tuned file, overrides) and its ``run``."""
    cfg_cls, run = resolve(stage)
    return load_config(cfg_cls, STAGES[stage].yaml, profile, overrides), run
