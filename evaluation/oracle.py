"""What each stage learned: rank correlation of OOF scores with the synthetic oracle's parts.

The synthetic generator writes ``oracle.parquet`` with the true logit split into parts
(``logit_table``, ``logit_patient``, ``logit_image``, ``logit_shared``). A model that learned
the image-only part correlates with ``logit_image``; one that did not sits near 0 there, which
pAUC alone does not show. Real data has no oracle and this section is left out.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import spearmanr

from isicstack.data.io import DataError
from isicstack.data.layout import ORACLE
from isicstack.data.sections import skipped, skipped_lines
from isicstack.synthetic.config import SynthConfig
from isicstack.synthetic.generate import crop_params, simulate
from isicstack.synthetic.render import crop_rng, veil_share

log = logging.getLogger(__name__)
TITLE = "What each model learned (synthetic oracle)"


def oracle_parts(path: str | os.PathLike[str], ids: pl.Series) -> pl.DataFrame | None:
    """The oracle's ``logit*`` columns in ``ids`` order, or None when no oracle file exists.

    A DataError names the file when it lacks ids of the folds (an oracle of other data).
    """
    path = Path(path)
    if not path.is_file():
        return None
    oracle = pl.read_parquet(path)
    parts = [c for c in oracle.columns if c.startswith("logit")]
    if "isic_id" not in oracle.columns or not parts:
        raise DataError(f"{path}: expected isic_id and logit* columns, has {oracle.columns}")
    out = pl.DataFrame({"isic_id": ids}).join(oracle.select("isic_id", *parts), on="isic_id",
                                              how="left", maintain_order="left")
    lost = out.filter(pl.col(parts[0]).is_null())["isic_id"]
    if lost.len():
        raise DataError(f"{path}: no oracle row for {lost.len()} id(s) of folds.parquet, e.g. "
                        f"{lost[0]!r}; the oracle belongs to another data set")
    return out.select(parts)


def veil_shares(cfg: SynthConfig) -> pl.DataFrame:
    """``isic_id, veil_share`` of every train crop of the synthetic set ``cfg`` describes.

    The image-only part (``logit_image``) is drawn only as blue-white veil; re-drawing each
    crop's veil layer gives the share of the lesion under it, the best a reader of the crops
    could measure: a ceiling for the image stage (benchmarks/bench_ceiling.py), never an input.
    """
    c, train, lat = simulate(cfg)
    params = crop_params(cfg, c, lat)
    rows = np.flatnonzero(train)  # the train crops are split 0, numbered in row order
    share = [veil_share(params[r], crop_rng(cfg.seed, 0, i)) for i, r in enumerate(rows)]
    return pl.DataFrame({"isic_id": c["isic_id"][rows], "veil_share": share})


def rank_correlations(preds: dict[str, np.ndarray], parts: pl.DataFrame) -> dict[str, dict]:
    """Spearman correlation of every model's scores with every oracle part."""
    return {name: {part: float(spearmanr(p, parts[part].to_numpy()).statistic)
                   for part in parts.columns}
            for name, p in preds.items()}


def oracle_section(data_dir: Path, ids: pl.Series,
                   preds: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Correlations plus where they came from, or skipped (why) without an oracle (real data)
    or without predictions."""
    path = data_dir / ORACLE
    try:
        parts = oracle_parts(path, ids)
    except DataError as err:
        log.warning("report: oracle correlations skipped: %s", err)
        return skipped(str(err), path=str(path))
    if parts is None:
        return skipped(f"no {ORACLE} beside the data (only the synthetic set knows the true "
                       "risk)", path=str(path))
    if not preds:
        return skipped("no OOF predictions", path=str(path))
    return {"path": str(path), "spearman": rank_correlations(preds, parts)}


def markdown(section: dict[str, Any] | None) -> list[str]:
    """Report lines: a model x oracle-part table of Spearman correlations."""
    if not section:
        return []
    if (done := skipped_lines(TITLE, section)) is not None:
        return done
    corr = section["spearman"]
    parts = list(next(iter(corr.values())))
    lines = [f"\n## {TITLE}\n",
             f"Spearman rank correlation of the OOF scores with each part of the true logit "
             f"(`{section['path']}`). `logit_image` is drawn only in the crops: a tabular model "
             "sits near 0 there, an image model that learned should not.\n",
             "| model | " + " | ".join(f"`{p}`" for p in parts) + " |",
             "|---|" + "---:|" * len(parts)]
    for name, row in corr.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[p]:.3f}" for p in parts) + " |")
    return lines
