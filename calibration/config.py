"""The operating point's config (``report.yaml: operating_point``; the app builds one too).

Kept apart from ``operating_point.py`` (the computation) so that the report's config, which
nests it, imports config modules only (``isic report --help`` loads no measure).
"""

from __future__ import annotations

from dataclasses import dataclass

from isicstack.settings.keys import ConfigError


@dataclass
class OperatingPointConfig:
    """Where the threshold sits and how intervals are drawn (``report.yaml: operating_point``)."""

    enabled: bool = True  # add the operating-point section
    target_tpr: float = 0.8  # threshold = the highest one reaching this sensitivity on OOF
    n_boot: int = 1000  # bootstrap replicates over patients
    ci: float = 0.95  # coverage of the intervals
    seed: int = 0  # bootstrap seed

    def __post_init__(self) -> None:
        if not 0 < self.target_tpr <= 1:
            raise ConfigError(
                f"operating_point.target_tpr must be in (0, 1], got {self.target_tpr}")
        if not 0 < self.ci < 1:
            raise ConfigError(f"operating_point.ci must be in (0, 1), got {self.ci}")
        if self.n_boot < 0:
            raise ConfigError(f"operating_point.n_boot must be >= 0, got {self.n_boot}")
