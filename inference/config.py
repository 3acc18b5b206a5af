"""The configs of scoring from saved runs: ``isic predict`` (``configs/predict.yaml``),
``isic predict-images`` (``configs/predict_images.yaml``) and ``isic kaggle-package``
(``configs/package.yaml``, which ships a predict config).

Kept apart from the commands (torch, the GBDT libraries): their ``--help``, the app and the
package read these without loading a model library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from isicstack.settings.command import Command


@dataclass
class PredictConfig:
    """Config of ``isic predict`` (``configs/predict.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "predict", "isicstack.inference.predict",
        "offline inference from saved models on a test directory")

    data_dir: str = "auto"          # the test directory
    artifacts: str = "artifacts"    # holds runs/<model>/, calibration/ (only those are read)
    profile: str = "default"        # config profile in use (set by --profile)
    out: str = ""                   # submission path; "" = <artifacts>/submission.csv
    preds_dir: str = ""             # per-model test scores; "" = <artifacts>/predict
    stacker: str = "stack"          # run folder of stacker.json; "" = use `fallback`
    fallback: str = "lgbm"          # single model submitted when there is no stacker
    models: list[str] = field(default_factory=list)  # extra models to score for inspection
    batch_rows: int = 50_000        # rows per batch (whole patients; a bigger patient alone)
    image_batch_size: int = 256     # crops per batch of the image models
    num_workers: int = 2            # image decode workers
    accelerator: str = "auto"       # auto (GPU when present) | cpu | gpu
    cpu_threads: int = 0            # image models on CPU; 0 = cores minus workers
    # auto: the calibrated risk (`prob` column, risk.csv) where `isic calibrate` saved a current
    # map; required: an error without one for the submitted model; off: no calibrated risk
    calibration: Literal["auto", "required", "off"] = "auto"  # risk from `isic calibrate` maps
    submit_calibrated: bool = False  # submission.csv holds the calibrated risk (same ranking)


@dataclass
class PredictImagesConfig:
    """Config of ``isic predict-images`` (``configs/predict_images.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "predict-images", "isicstack.inference.predict_images",
        "score an HDF5 or JPEG folder of crops with a saved image-only run -> isic_id,pred",
        yaml="predict_images")

    artifacts: str = "artifacts"  # holds runs/<name>/
    profile: str = "default"      # config profile in use (set by --profile)
    name: str = ""  # the saved image-only run under artifacts/runs/; "" = the chain's
    images: str = ""              # an HDF5 crop file or a folder of JPEGs
    out: str = ""                 # "" = <artifacts>/predict_images/<name>.csv
    chunk_rows: int = 4096        # crops per chunk: memory is flat in the crop count
    batch_size: int = 256         # crops per forward pass
    num_workers: int = 0          # JPEG decode workers
    accelerator: str = "auto"     # auto (GPU when present) | cpu | gpu
    cpu_threads: int = 0          # 0 = cores minus workers


@dataclass
class PackageConfig:
    """Config of ``isic kaggle-package`` (``configs/package.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "kaggle-package", "isicstack.inference.package",
        "dist/kaggle: wheel + saved models + run_inference.py for Kaggle", yaml="package")

    data_dir: str = "auto"  # unused: the package holds no data
    artifacts: str = "artifacts"  # holds the runs/ to ship
    profile: str = "default"  # config profile in use (set by --profile)
    out_dir: str = "dist/kaggle"  # package folder written
    predict_profile: str = ""  # profile of configs/predict.yaml to ship; "" = `profile`
    predict_overrides: list[str] = field(default_factory=list)  # e.g. ["stacker=", "models=[]"]
    wheel: bool = True  # build and include the isicstack wheel
    dataset_id: str = "your-kaggle-username/isicstack-models"  # Kaggle dataset id
    dataset_title: str = "isicstack models"  # Kaggle dataset title
