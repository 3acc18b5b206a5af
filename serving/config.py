"""The configs of the deployable model's commands: ``isic bundle`` (``configs/bundle.yaml``)
and ``isic promote``.

Kept apart from the commands (torch, the GBDT libraries, MLflow): ``isic bundle --help`` and
``isic promote --help`` import this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from isicstack.settings.command import Command
from isicstack.settings.keys import ConfigError

MODEL_NAME = "isicstack"  # the registered model's name in the MLflow Model Registry


@dataclass
class BundleConfig:
    """Config of ``isic bundle`` (``configs/bundle.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "bundle", "isicstack.serving.bundle",
        "dist/bundle: the deployable model (saved runs + manifest + reference statistics)")

    data_dir: str = "auto"  # the TRAINING data the reference statistics describe
    artifacts: str = "artifacts"  # holds the runs/, calibration/, oof/ and folds to ship
    profile: str = "default"  # config profile in use (set by --profile)
    out_dir: str = "dist/bundle"  # bundle folder written (replaced only if it is a bundle)
    predict_profile: str = ""  # profile of configs/predict.yaml to ship; "" = `profile`
    predict_overrides: list[str] = field(default_factory=list)  # e.g. ["stacker="]
    # the few-lesions model: scores patients with fewer than `max_lesions` lesions in a request;
    # "" = none. A named run that is missing is left out with a warning (`make bundle` makes it)
    solo: str = "lgbm_solo"
    max_lesions: int = 4  # patients with fewer lesions than this are scored by `solo`
    target_tpr: float = 0.8  # operating point: the highest threshold reaching this OOF recall
    sample: int = 2000  # values kept per numeric feature, and crops decoded, for reference.json
    seed: int = 0  # of those samples
    # register in the MLflow Model Registry of `artifacts` (ledger.store.store_uri): off | on |
    # auto (when MLflow is installed)
    register: Literal["off", "on", "auto"] = "off"

    def __post_init__(self) -> None:
        if not 0 < self.target_tpr <= 1:
            raise ConfigError(f"bundle: target_tpr must be in (0, 1], got {self.target_tpr}")
        if self.max_lesions < 1:
            raise ConfigError(f"bundle: max_lesions must be >= 1, got {self.max_lesions}")
        if self.sample < 1:
            raise ConfigError(f"bundle: sample must be >= 1, got {self.sample}")


@dataclass
class PromoteConfig:
    """Config of ``isic promote``: point an alias (``champion``) at a registered version."""

    COMMAND: ClassVar[Command] = Command(
        "promote", "isicstack.serving.registry",
        "set an alias (champion) on a version of the registered bundle (MLflow Model Registry)")

    data_dir: str = "auto"  # unused: promoting reads no data
    artifacts: str = "artifacts"  # whose MLflow store holds the registry (ledger.store)
    profile: str = "default"  # config profile in use (set by --profile)
    version: int = 0  # the registered version to promote; 0 = the latest
    alias: str = "champion"  # the alias set on it (moved from any other version)
    name: str = MODEL_NAME  # the registered model

    def __post_init__(self) -> None:
        if self.version < 0:
            raise ConfigError(f"promote: version must be >= 0 (0 = the latest), got "
                              f"{self.version}")
        if not self.alias or not self.alias.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"promote: alias {self.alias!r} must be letters, digits, - or _")


@dataclass
class SpaceConfig:
    """Config of ``isic space``: a folder that runs the web page as a Hugging Face Space."""

    COMMAND: ClassVar[Command] = Command(
        "space", "isicstack.serving.space",
        "dist/space: the web page over a bundle as a Hugging Face Space (app.py, pinned "
        "requirements, the bundle, the wheel)", yaml="space")

    data_dir: str = "auto"  # unused: a Space holds no data
    artifacts: str = "artifacts"  # the registry a models:/ bundle is read from
    profile: str = "default"  # config profile in use (set by --profile)
    bundle: str = "dist/bundle"  # a bundle folder or models:/isicstack@champion
    out_dir: str = "dist/space"  # folder written (replaced only if it is a Space of ours)
    title: str = "isicstack lesion check"  # the Space's title (README front matter)
    # auto: cc-by-nc-4.0 when the bundle was trained on ISIC data (the data's licence),
    # apache-2.0 (the code's) when on the synthetic set
    license: str = "auto"
    cpu_threads: int = 2  # torch threads of the page (a free CPU Space has 2 vCPUs)
