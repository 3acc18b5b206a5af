"""The config of ``isic replay`` (``configs/replay.yaml``): a generated deployment stream with
planted shifts, sent through a running ``isic serve`` to test a monitoring setup.

A module of its own (not ``monitoring/config.py``, the monitor's) and light: ``isic replay
--help`` reads it without NumPy, the generator or an HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from isicstack.settings.command import Command
from isicstack.settings.keys import ConfigError

SHIFTS = ("centre", "age", "colour", "prevalence")  # what a segment of windows may plant


@dataclass
class ReplayConfig:
    """Config of ``isic replay``: which server, which stream, which shifts, which outcomes."""

    COMMAND: ClassVar[Command] = Command(
        "replay", "isicstack.monitoring.replay",
        "send a generated patient stream with planted shifts through a running `isic serve` "
        "(windows, outcomes, a manifest beside the log)",
        flags=("url", "window", "log", "seed"))

    url: str = "http://127.0.0.1:8000"  # the running `isic serve` (make serve)
    token_env: str = "ISIC_API_TOKEN"  # env var with its bearer token, sent when set
    log: str = "artifacts/serve/predictions.db"  # the server's log: manifest written beside
    profile: str = "default"  # config profile in use (set by --profile)
    synth_profile: str = ""  # configs/synth.yaml profile the model was trained on ("" = profile)
    seed: int = 2029  # generator seed of the stream; must differ from the training data's
    window: int = 1000  # lesions per window (whole patients, the last one trimmed)
    # mean lesions a patient sends (the generator's patient count follows); 0 = the training
    # set's (a whole-body map: ~50-70); a clinic or telemedicine request holds a few lesions
    lesions_per_patient: float = 0.0
    clean: int = 20  # clean windows before the first shift (false alarms are counted on them)
    shifts: list[str] = field(default_factory=lambda: list(SHIFTS))  # segments, in this order
    shift_windows: int = 3  # windows of each shift segment
    gap: int = 1  # clean windows between two shift segments (the stream reverts)
    centre: str = "Replay Clinic (never in training)"  # the new `attribution` value
    centre_share: float = 0.2  # share of a centre window's lesions (whole patients) it gets
    age_years: float = 5.0  # added to age_approx in an age window
    cast_share: float = 0.3  # share of a colour window's crops given a colour cast
    cast_rgb: list[float] = field(default_factory=lambda: [30.0, 0.0, -20.0])  # added per channel
    prevalence_factor: float = 2.0  # a prevalence window's pool: the training prevalence x this
    audit: float = 0.05  # share of unflagged lesions per window given an outcome (reason audit)
    clients: int = 4  # concurrent HTTP clients (one request per patient)
    timeout_s: float = 300.0  # per request

    def __post_init__(self) -> None:
        unknown = [s for s in self.shifts if s not in SHIFTS]
        if unknown:
            raise ConfigError(f"shifts: {unknown} not among {list(SHIFTS)}")
        for key in ("window", "shift_windows", "clients"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.clean < 0 or self.gap < 0 or self.lesions_per_patient < 0:
            raise ConfigError("clean, gap and lesions_per_patient must be >= 0")
        for key in ("centre_share", "cast_share", "audit"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        if len(self.cast_rgb) != 3:
            raise ConfigError(f"cast_rgb: three numbers (R, G, B), got {self.cast_rgb}")
        if self.prevalence_factor <= 0:
            raise ConfigError(f"prevalence_factor must be > 0, got {self.prevalence_factor}")
