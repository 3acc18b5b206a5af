"""The configs of the evaluating commands and of the report's sections, in one light module.

``isic report`` (``ReportConfig`` and its sections: drift, clinical with its subgroup cells; the
operating point's and Grad-CAM's configs live in their rooms), ``isic subgroups``,
``isic calibrate``, ``isic evaluate``, ``isic loco`` and ``isic runs``. Kept apart from the
commands (LightGBM, scikit-learn, matplotlib): their ``--help``, a nested config and the tests
read these without them. The room's bottom layer: it imports nothing of the room.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from isicstack.calibration.config import OperatingPointConfig
from isicstack.explain.config import GradcamReportConfig
from isicstack.settings.command import Command

DEFAULT_COLUMNS = ["anatom_site_general", "sex", "age_band", "attribution", "tbp_tile_type",
                   "iddx_3"]  # the subgroup cells' columns (age_band: cut from age_approx)


@dataclass
class DriftConfig:
    """Adversarial validation settings (``report.yaml: drift``)."""

    enabled: bool = True  # run the drift check
    auc_warn: float = 0.75  # warn (log + report) above this AUC
    n_folds: int = 5  # patient-grouped; fewer when the test file has fewer patients
    num_rounds: int = 100  # LightGBM boosting rounds
    learning_rate: float = 0.1  # LightGBM learning rate
    num_leaves: int = 15  # LightGBM leaves per tree
    max_train_rows: int = 50_000  # train rows are subsampled beyond this (speed at full size)
    min_test_rows: int = 50  # below this (e.g. Kaggle's 3-row public test) the check is skipped
    top: int = 10  # features listed in the report
    seed: int = 0  # seed of the folds, subsample and LightGBM


@dataclass
class SubgroupConfig:
    """Which columns, how cells are cut, and when a cell is too small to score."""

    enabled: bool = True  # the report's subgroup section
    models: list[str] = field(default_factory=list)  # empty: the stack if present, else all
    columns: list[str] = field(default_factory=lambda: list(DEFAULT_COLUMNS))  # age_band: bands
    diagnosis_columns: list[str] = field(default_factory=lambda: ["iddx_3"])  # vs all negatives
    age_bands: list[float] = field(default_factory=lambda: [30.0, 45.0, 60.0, 75.0])  # edges
    min_positives: int = 10  # a cell with fewer shows a dash and says so
    min_negatives: int = 10  # likewise for negatives (specificity)
    target_tpr: float = 0.8  # the overall operating point's threshold, fixed in every cell
    n_boot: int = 200  # bootstrap replicates of each cell's patients
    ci: float = 0.95  # interval level
    seed: int = 0  # of the bootstrap


@dataclass
class ClinicalReportConfig:
    """``report.yaml: clinical``: which sections, and their bootstrap sizes."""

    calibration: bool = True  # Brier / log loss / reliability of `isic calibrate`'s output
    reliability_bins: int = 10  # equal-count bins of the reliability diagram
    calibration_n_boot: int = 200  # patient-bootstrap replicates of the calibration figures
    subgroups: SubgroupConfig = field(default_factory=SubgroupConfig)  # cells by site, sex ...
    loco: bool = True  # show <artifacts>/loco/*.json when `isic loco` wrote them


@dataclass
class ReportConfig:
    """Config of ``isic report`` (``configs/report.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "report", "isicstack.evaluation.report",
        "CV table, ROC curves and score distributions")

    data_dir: str = "auto"  # metadata for the drift check, oracle.parquet when synthetic
    artifacts: str = "artifacts"  # reads oof/, runs/ and folds.parquet
    profile: str = "default"  # config profile in use (set by --profile)
    models: list[str] = field(default_factory=list)  # empty: every artifacts/oof/*.parquet
    out: str = ""  # empty: <artifacts>/report
    bins: int = 50  # histogram bins of the score plot
    dpi: int = 110  # PNG resolution
    operating_point: OperatingPointConfig = field(default_factory=OperatingPointConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    gradcam: GradcamReportConfig = field(default_factory=GradcamReportConfig)
    clinical: ClinicalReportConfig = field(
        default_factory=ClinicalReportConfig)  # calibration, subgroups, per centre


@dataclass
class SubgroupsConfig:
    """Config of ``isic subgroups`` (``configs/subgroups.yaml``): where to read, and the cells
    (``cells.*``: the same keys as the report's ``clinical.subgroups``)."""

    COMMAND: ClassVar[Command] = Command(
        "subgroups", "isicstack.evaluation.subgroups",
        "pAUC, AUC, sensitivity/specificity by site, sex, age, centre, diagnosis")

    data_dir: str = "auto"  # "auto": the data the folds were made from (folds.json)
    artifacts: str = "artifacts"  # folds.parquet and oof/ are read here
    profile: str = "default"  # config profile in use (set by --profile)
    out: str = ""  # "" = <artifacts>/subgroups
    cells: SubgroupConfig = field(default_factory=SubgroupConfig)  # models, columns, bootstrap


@dataclass
class CalibrateConfig:
    """Config of ``isic calibrate`` (``configs/calibrate.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "calibrate", "isicstack.evaluation.calibrate",
        "calibrated risk per model: prior correction + out-of-fold map (JSON)")

    data_dir: str = "auto"      # read only for oracle.parquet (synthetic: the true risk)
    artifacts: str = "artifacts"  # folds, oof/ and runs/ are read here
    profile: str = "default"    # config profile in use (set by --profile)
    models: list[str] = field(default_factory=list)  # empty: every OOF file, the stack included
    # prior: the prior correction alone, no map
    method: Literal["platt", "isotonic", "prior"] = "platt"  # the monotone map after the prior
    prior: bool = True          # undo the training-time class ratio before the map
    out: str = ""               # "" = <artifacts>/calibration
    n_boot: int = 1000          # patient-bootstrap replicates of the Brier / log-loss intervals
    seed: int = 0               # of the bootstrap


@dataclass
class EvaluateConfig:
    """Config of ``isic evaluate`` (``configs/evaluate.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "evaluate", "isicstack.evaluation.evaluate",
        "repeated CV of the tabular config over several fold seeds")

    name: str = "baseline"  # the evaluation's name: <artifacts>/evals/<name>.json
    data_dir: str = "auto"  # the train data (auto: real files if present, else synthetic)
    artifacts: str = "artifacts"  # output folder
    profile: str = "default"  # config profile of the evaluated tabular stage
    fold_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # one CV per seed
    n_folds: int = 5  # patient-grouped folds per seed
    models: list[str] = field(default_factory=list)  # empty: every enabled model
    stage_overrides: list[str] = field(default_factory=list)  # key=value for the tabular stage


@dataclass
class LocoConfig:
    """Config of ``isic loco`` (``configs/loco.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "loco", "isicstack.evaluation.loco",
        "leave-one-centre-out CV of the tabular stage (column=attribution)")

    data_dir: str = "auto"           # "auto": the tabular profile's data
    artifacts: str = "artifacts"     # folds.parquet and the patient-CV OOF files are read here
    profile: str = "default"         # config profile in use (set by --profile)
    column: str = "attribution"      # one held-out group per level (null: its own group)
    models: list[str] = field(default_factory=list)  # tabular model keys; empty: all enabled
    tabular_profile: str = ""        # profile of configs/tabular.yaml; "" = `profile`
    tabular_overrides: list[str] = field(default_factory=list)  # e.g. ["bags=1"]
    min_positives: int = 10          # a centre with fewer is counted, not scored
    n_boot: int = 200                # bootstrap replicates of each centre's patients
    ci: float = 0.95                 # interval level
    seed: int = 0                    # of the bootstrap
    out: str = ""                    # "" = <artifacts>/loco


@dataclass
class RunsConfig:
    """Config of ``isic runs`` (``configs/runs.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "runs", "isicstack.evaluation.runs_table",
        "the tracked (MLflow) stage runs: name, stage, profile, fold hash, OOF pAUC, when "
        "(`isic runs image` = stage=image)")

    artifacts: str = "artifacts"  # whose store is read (ISIC_TRACKING, MLFLOW_TRACKING_URI)
    stage: str = ""  # only runs of this stage: tabular | image | stack | report (empty: all)
    limit: int = 50  # the newest runs shown
