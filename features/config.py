"""The features' config (``features.*`` of ``configs/tabular.yaml``): which groups to build and
how, checked when it is made.

Kept apart from ``build.py`` (which reads fold and prediction files and builds every group) so
that a stage's config, and ``isic <stage> --help``, load without building code; it reads only
the patient group's context names (``features.patient``). The group names live here, where a
config is checked against them; ``build.GROUPS`` holds one builder per name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isicstack.features import patient

# the feature groups a config may name, in registry order (their builders: build.GROUPS)
GROUP_NAMES: tuple[str, ...] = ("raw", "lesion", "patient", "ugly_duckling", "categorical", "oof")


@dataclass
class FeatureConfig:
    """Which feature groups to build and how; every field has a YAML-friendly type."""

    groups: list[str] = field(  # feature groups to build (registry names)
        default_factory=lambda: ["raw", "lesion", "patient", "ugly_duckling", "categorical"]
    )
    patient_contexts: list[str] = field(  # groupings of the per-patient normalised features
        default_factory=lambda: ["patient", "patient_location", "patient_site"]
    )
    patient_rank: bool = True  # also within-patient ranks
    oof_names: list[str] = field(default_factory=list)  # other runs' OOF scores as features
    oof_noise_sd: float = 0.0  # noise on train-side OOF features (trust them less)
    oof_rank: bool = False  # also each OOF score's within-patient rank
    seed: int = 0  # seed of that noise

    def __post_init__(self) -> None:
        if self.oof_names and "oof" not in self.groups:  # naming scores to read implies them
            self.groups = [*self.groups, "oof"]
        validate(self)


def validate(cfg: FeatureConfig) -> None:
    """Reject unknown or repeated groups/contexts and an oof group without names."""
    unknown = [g for g in cfg.groups if g not in GROUP_NAMES]
    if unknown:
        raise ValueError(f"unknown feature group(s) {unknown}; known: {', '.join(GROUP_NAMES)}")
    if len(set(cfg.groups)) != len(cfg.groups):
        raise ValueError(f"feature groups repeated: {cfg.groups}")
    patient.check_contexts(cfg.patient_contexts)
    if "oof" in cfg.groups and not cfg.oof_names:
        raise ValueError("feature group 'oof' needs oof_names (the stages whose OOF to read)")
    if cfg.oof_noise_sd < 0:
        raise ValueError(f"oof_noise_sd must be >= 0, got {cfg.oof_noise_sd}")
