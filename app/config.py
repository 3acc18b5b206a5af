"""The config of ``isic app`` (``configs/app.yaml``), kept apart from ``page.py`` (Gradio) and
the scoring service (torch) so ``isic app --help`` loads neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from isicstack.settings.command import Command
from isicstack.settings.keys import ConfigError


@dataclass
class AppConfig:
    """Config of ``isic app`` (``configs/app.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "app", "isicstack.app.page",
        "the clinician web page (Gradio) on 127.0.0.1:<port>")

    artifacts: str = "artifacts"     # holds the saved runs the page scores with
    bundle: str = ""  # a bundle folder or models:/isicstack@champion: score with it instead
    profile: str = "default"         # config profile in use (set by --profile)
    host: str = "127.0.0.1"          # loopback only; 0.0.0.0 exposes the page to the network
    port: int = 7860                 # port on host
    image_run: str = ""  # image-only run scoring uploads without metadata; "" = the chain's
    stacker: str = "stack"           # runs/<stacker>/stacker.json; missing: `fallback` alone
    fallback: str = "lgbm"           # single model when there is no stacker
    target_tpr: float = 0.8          # threshold picked on the OOF scores at this sensitivity
    n_boot: int = 200                # patient-bootstrap replicates of the shown intervals
    max_pixels: int = 16_000_000     # larger uploads are refused (a crop is ~150 x 150)
    max_upload_mb: float = 20.0      # larger files are refused
    layer: str = ""                  # Grad-CAM layer; "" = the backbone's last stage
    cpu_threads: int = 0             # 0 = every core
    max_patient_rows: int = 5000     # lesions in one patient's CSV (real patients: median 241)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535, got {self.port}")
        if self.max_pixels < 1 or self.max_upload_mb <= 0:
            raise ConfigError("max_pixels and max_upload_mb must be positive")
