"""The report's clinical sections in one place: calibration, subgroups, per-centre CV.

``evaluation/report.py`` calls :func:`section` once and :func:`markdown` once, so these
sections grow here without growing the report module. Each part reads artifacts only: the
calibrated scores of ``isic calibrate``, the OOF files, the LOCO results of ``isic loco``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from isicstack.data.provenance import fold_hash
from isicstack.data.sections import skipped, skipped_lines
from isicstack.evaluation import calibration_report, subgroup_tables
from isicstack.evaluation.config import ClinicalReportConfig
from isicstack.evaluation.loco import markdown as loco_markdown
from isicstack.evaluation.loco import read_sections
from isicstack.evaluation.subgroups import section as subgroup_section

log = logging.getLogger(__name__)


def section(cfg: ClinicalReportConfig, artifacts: str | Path, data_dir: Path,
            folds: pl.DataFrame, out: Path, dpi: int) -> dict[str, Any]:
    """Every enabled part; a part that fails on bad input is named, never fatal to the report."""

    parts: dict[str, Any] = {}
    jobs = {"calibration": (cfg.calibration, lambda: calibration_report.section(
                artifacts, folds, data_dir, out, dpi, cfg.reliability_bins,
                cfg.calibration_n_boot)),
            "subgroups": (cfg.subgroups.enabled, lambda: subgroup_section(
                cfg.subgroups, artifacts, data_dir, folds)),
            "loco": (cfg.loco, lambda: read_sections(artifacts, fold_hash(folds)))}
    for name, (enabled, job) in jobs.items():
        if not enabled:
            continue
        try:
            parts[name] = job()
        except (ValueError, KeyError, FileNotFoundError) as err:
            log.warning("report: %s section skipped: %s", name, err)
            parts[name] = skipped(f"{type(err).__name__}: {err}")
    return parts


def markdown(parts: dict[str, Any] | None) -> list[str]:
    """The sections' report lines, in order."""

    if not parts:
        return []
    lines = calibration_report.markdown(parts.get("calibration"))
    lines += subgroup_tables.markdown(parts.get("subgroups"))
    loco = parts.get("loco")
    if isinstance(loco, dict):  # a skipped part (else a list: one section per column)
        lines += skipped_lines("Leave-one-centre-out CV", loco) or []
    elif loco:
        lines += loco_markdown(loco)
    return lines
