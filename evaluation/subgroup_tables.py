"""For whom the model works: pAUC, AUC and the operating point's sensitivity / specificity by
anatomical site, sex, age band, centre (``attribution``), tile type and diagnosis.

Each cell gets its counts and a 95 % interval from a bootstrap over the cell's patients
(``evaluation.paired``: ``patient_draws``, ``weighted_pauc``). The threshold is the one the
overall operating point picks on every OOF row (what a deployed model uses), held fixed in every
cell. A cell with fewer than ``min_positives`` positives (or ``min_negatives`` negatives) says
so instead of printing a number whose interval would span most of the range.

Diagnosis columns (``iddx_3``: melanoma vs BCC vs SCC ...) hold only positives or only
negatives per level, so a cell there is "this diagnosis's lesions against every negative":
its sensitivity is the share of that cancer caught; a benign level gets its specificity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.calibration.operating_point import threshold_at_tpr
from isicstack.data.layout import TRAIN_META
from isicstack.data.sections import left_out_lines, skipped_lines
from isicstack.evaluation.config import SubgroupConfig
from isicstack.evaluation.paired import patient_draws, percentile_interval, weighted_pauc

TITLE = "Subgroups: for whom the model works"

AGE = "age_band"
MISSING = "(missing)"
CELLS_PER_CALL = 2_000_000  # replicates x rows per weighted-pAUC call (~16 MB per array)


def age_labels(age: np.ndarray, edges: list[float]) -> np.ndarray:
    """``<30``, ``30-44``, ..., ``75+`` (integer years), ``(missing)`` for an unknown age."""
    edges = sorted(edges)
    names = [f"<{edges[0]:g}"] + [f"{a:g}-{b - 1:g}" for a, b in zip(edges, edges[1:],
                                                                     strict=False)]
    names.append(f"{edges[-1]:g}+")
    age = np.asarray(age, dtype=np.float64)
    idx = np.searchsorted(np.asarray(edges), age, side="right")
    out = np.asarray(names, dtype=object)[np.minimum(idx, len(names) - 1)]
    out[~np.isfinite(age)] = MISSING
    return out


def group_frame(data_dir: Path, ids: pl.Series, cfg: SubgroupConfig
                ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each configured column's labels in ``ids`` order, and the columns left out, with why."""
    path = Path(data_dir) / TRAIN_META
    if not path.is_file():
        return {}, dict.fromkeys(cfg.columns, f"{path} not found")
    have = set(pl.read_csv(path, n_rows=0).columns)
    wanted = {("age_approx" if c == AGE else c) for c in cfg.columns} & have
    meta = pl.DataFrame({"isic_id": ids}).join(
        pl.read_csv(path, columns=["isic_id", *sorted(wanted)], infer_schema=False),
        on="isic_id", how="left", maintain_order="left")
    labels, left_out = {}, {}
    for col in cfg.columns:
        src = "age_approx" if col == AGE else col
        if src not in have:
            left_out[col] = f"no column {src!r} in {path.name} (test-time data has no diagnosis)"
            continue
        if col == AGE:
            age = meta[src].cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()
            labels[col] = age_labels(age, cfg.age_bands)
        else:
            labels[col] = meta[src].fill_null(MISSING).to_numpy().astype(object)
    return labels, left_out


def _rate(num: np.ndarray, den: np.ndarray, counts: np.ndarray, ci: float
          ) -> tuple[float, list[float] | None]:
    """A ratio of per-patient sums and its bootstrap interval."""
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = (counts @ num) / (counts @ den)
    return float(num.sum() / den.sum()), percentile_interval(boot, ci)


def cell(y: np.ndarray, pred: np.ndarray, patients: np.ndarray, hit: np.ndarray,
         cfg: SubgroupConfig) -> dict[str, Any]:
    """Counts, pAUC, AUC, sensitivity and specificity of one cell's rows, or why not."""
    pos = int(y.sum())
    neg = int(y.size - pos)
    out: dict[str, Any] = {"rows": int(y.size), "patients": int(np.unique(patients).size),
                           "positives": pos, "negatives": neg, "notes": []}
    if not y.size:
        return out
    counts, codes = patient_draws(patients, max(cfg.n_boot, 1), cfg.seed)
    n_pat = counts.shape[1]

    def per(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=mask.astype(np.float64), minlength=n_pat)

    enough_pos, enough_neg = pos >= cfg.min_positives, neg >= cfg.min_negatives
    if not pos:
        out["notes"].append("no positives")
    elif not enough_pos:
        out["notes"].append(f"too few positives ({pos} < {cfg.min_positives})")
    if not enough_neg:
        out["notes"].append(f"too few negatives ({neg} < {cfg.min_negatives})")
    if enough_pos:
        out["sensitivity"], out["sensitivity_ci"] = _rate(per((y == 1) & hit), per(y == 1),
                                                          counts, cfg.ci)
    if enough_neg:
        out["specificity"], out["specificity_ci"] = _rate(per((y == 0) & ~hit), per(y == 0),
                                                          counts, cfg.ci)
    if enough_pos and enough_neg:
        chunk = max(1, CELLS_PER_CALL // y.size)
        for key, floor in (("pauc", 0.8), ("auc", 0.0)):
            out[key] = float(weighted_pauc(y, pred, np.ones((1, y.size)), floor)[0])
            boot = np.concatenate([weighted_pauc(y, pred, counts[s:s + chunk][:, codes], floor)
                                   for s in range(0, counts.shape[0], chunk)])
            out[f"{key}_ci"] = percentile_interval(boot, cfg.ci)
    return out


def column_cells(labels: np.ndarray, y: np.ndarray, pred: np.ndarray, patients: np.ndarray,
                 hit: np.ndarray, cfg: SubgroupConfig, diagnosis: bool) -> list[dict[str, Any]]:
    """One cell per level (largest first, ``(missing)`` last)."""
    levels, sizes = np.unique(labels.astype(str), return_counts=True)
    order = sorted(range(levels.size), key=lambda i: (levels[i] == MISSING, -sizes[i]))
    rows = []
    for i in order:
        own = labels.astype(str) == levels[i]
        cancer = diagnosis and bool(y[own].any())
        mask = own & (y == 1) | (y == 0) if cancer else own  # a cancer: against every negative
        c = cell(y[mask], pred[mask], patients[mask], hit[mask], cfg)
        if cancer:  # show the diagnosis's own lesions; specificity is the overall one
            c.pop("specificity", None)
            c.pop("specificity_ci", None)
            c.update(rows=int(own.sum()), patients=int(np.unique(patients[own]).size))
            c["notes"] = [n for n in c["notes"] if "negatives" not in n]
            c["notes"].append(f"against all {c.pop('negatives'):,} negatives")
        elif diagnosis:
            c["notes"] = ["no diagnosis recorded" if levels[i] == MISSING
                          else "benign diagnosis", "specificity only"]
        rows.append({"group": str(levels[i]), **c})
    return rows


def subgroup_tables(labels: dict[str, np.ndarray], y: np.ndarray, pred: np.ndarray,
                    patients: np.ndarray, cfg: SubgroupConfig) -> dict[str, Any]:
    """Every column's cells for one model at the overall operating point's threshold."""
    y = np.asarray(y).astype(np.int64)
    pred = np.asarray(pred, dtype=np.float64)
    patients = np.asarray(patients).astype(str)
    thr = threshold_at_tpr(y, pred, cfg.target_tpr)
    hit = pred >= thr
    out: dict[str, Any] = {"threshold": thr, "target_tpr": cfg.target_tpr,
                           "all": cell(y, pred, patients, hit, cfg), "columns": {}}
    for col, lab in labels.items():
        diagnosis = col in cfg.diagnosis_columns
        out["columns"][col] = {"mode": "diagnosis" if diagnosis else "cell",
                               "cells": column_cells(lab, y, pred, patients, hit, cfg,
                                                     diagnosis)}
    return out


def fmt(c: dict[str, Any], key: str) -> str:
    """``0.123 [0.100, 0.150]``, or a dash when the cell has no such figure (see notes)."""
    if key not in c:
        return "—"
    ci = c.get(f"{key}_ci")
    return f"{c[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


HEADER = ["| group | rows | patients | positives | pAUC | AUC | sensitivity | specificity "
          "| note |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]


def row(name: str, c: dict[str, Any]) -> str:
    """One table row of a cell."""
    return (f"| {name} | {c['rows']:,} | {c['patients']:,} | {c['positives']:,} | "
            f"{fmt(c, 'pauc')} | {fmt(c, 'auc')} | {fmt(c, 'sensitivity')} | "
            f"{fmt(c, 'specificity')} | {'; '.join(c['notes'])} |")


def markdown(sec: dict[str, Any] | None) -> list[str]:
    """Report lines: per model and column, one table of cells."""
    if not sec:
        return []
    if (done := skipped_lines(TITLE, sec)) is not None:
        return done
    lines = [f"\n## {TITLE}\n"]
    cfg = sec["config"]
    lines.append(f"Threshold: the overall operating point (sensitivity ≥ {cfg['target_tpr']:.2f} "
                 "on every OOF row), held fixed in each cell. Intervals: "
                 f"{100 * cfg['ci']:.0f}%, {cfg['n_boot']} bootstrap replicates of the cell's "
                 f"patients. A cell with fewer than {cfg['min_positives']} positives or "
                 f"{cfg['min_negatives']} negatives shows a dash and says so. Diagnosis "
                 "columns: each cancer's lesions against every negative.")
    for model, tab in sec["models"].items():
        lines += [f"\n### `{model}` (threshold {tab['threshold']:.4g})\n", *HEADER,
                  row("**all**", tab["all"])]
        for col, spec in tab["columns"].items():
            lines.append(f"| **{col}**{' (diagnosis)' if spec['mode'] == 'diagnosis' else ''}"
                         " | | | | | | | | |")
            lines += [row(c["group"], c) for c in spec["cells"]]
    lines += left_out_lines(sec.get("left_out", {}))
    return lines
