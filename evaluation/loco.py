"""``isic loco``: leave-one-centre-out CV of the tabular stage, and per-centre tables.

Patient-grouped CV mixes every centre into every fold, so it says how the model does on new
patients of the same centres. Holding out one ``attribution`` (or any column) at a time and
training on the others says how it does at a centre it never saw (FLamby's per-centre split of
ISIC 2019 asks the same). Each held-out centre's pAUC and AUC, with a bootstrap over its
patients, sits beside the patient-grouped CV's figures on the same rows.

It reuses ``tabular.cv.cross_validate`` with the centre codes as the fold vector, on the
features and config of ``configs/tabular.yaml`` (first pass: OOF-score features were made out of
patient folds, and would carry the held-out centre's labels). Writes ``<out>/<column>.json``
(read by the report when present) and ``<out>/<column>/<model>.parquet``; it never writes under
``oof/`` or ``runs/``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.folds import read_folds
from isicstack.data.io import DataError, write_json, write_parquet
from isicstack.data.layout import TRAIN_META, resolve_data_dir
from isicstack.data.metric import pauc, roc_auc
from isicstack.data.predictions import read_run_oof
from isicstack.data.provenance import fold_hash
from isicstack.evaluation.config import LocoConfig, SubgroupConfig
from isicstack.evaluation.subgroup_tables import MISSING, cell, fmt
from isicstack.settings.layers import load_config, save_config
from isicstack.tabular.config import TabularConfig
from isicstack.tabular.cv import cross_validate, prepare

log = logging.getLogger(__name__)


def tabular_config(cfg: LocoConfig) -> TabularConfig:
    """The tabular stage's config as LOCO trains it (first pass only)."""
    over = [f"artifacts={cfg.artifacts}", *([f"data_dir={cfg.data_dir}"]
                                            if cfg.data_dir != "auto" else []),
            *cfg.tabular_overrides]
    tcfg = load_config(TabularConfig, "tabular", cfg.tabular_profile or cfg.profile, over)
    if "oof" in tcfg.features.groups:
        raise ValueError("loco: the tabular config uses OOF-score features "
                         f"({tcfg.features.oof_names}); they were made out of patient folds and "
                         "would leak the held-out centre's labels: run it on the first pass")
    return tcfg


def centre_labels(data_dir: Path, ids: pl.Series, column: str) -> np.ndarray:
    """``column`` of the train metadata in ``ids`` order; null is its own level."""
    path = data_dir / TRAIN_META
    if column not in pl.read_csv(path, n_rows=0).columns:
        raise DataError(f"{path}: no column {column!r} to hold out by")
    meta = pl.DataFrame({"isic_id": ids}).join(
        pl.read_csv(path, columns=["isic_id", column], infer_schema=False), on="isic_id",
        how="left", maintain_order="left")
    return meta[column].fill_null(MISSING).to_numpy().astype(str)


def per_centre(labels: np.ndarray, y: np.ndarray, patients: np.ndarray, loco: np.ndarray,
               cv: np.ndarray | None, scfg: SubgroupConfig) -> list[dict[str, Any]]:
    """Each centre's LOCO cell and, on the same rows, the patient-grouped CV's cell."""
    out = []
    levels, sizes = np.unique(labels, return_counts=True)
    for i in np.argsort(-sizes, kind="stable"):
        m = labels == levels[i]
        hit = np.zeros(int(m.sum()), dtype=bool)  # threshold-free figures only
        row = {"group": str(levels[i]), "loco": cell(y[m], loco[m], patients[m], hit, scfg)}
        if cv is not None:
            row["cv"] = cell(y[m], cv[m], patients[m], hit, scfg)
        for side in ("loco", "cv"):
            if side in row:
                for k in ("sensitivity", "sensitivity_ci", "specificity", "specificity_ci"):
                    row[side].pop(k, None)
        out.append(row)
    return out


def patient_cv(artifacts: str, name: str, folds: pl.DataFrame) -> np.ndarray | None:
    """The patient-grouped OOF scores of ``name`` when they exist for these folds."""
    try:
        return read_run_oof(artifacts, name, folds)
    except (DataError, FileNotFoundError) as err:
        log.warning("loco: no patient-grouped CV beside %s: %s", name, err)
        return None


def run(cfg: LocoConfig) -> dict[str, Any]:
    """Train every model once per held-out centre; write the per-centre table."""
    tcfg = tabular_config(cfg)
    data = prepare(tcfg)
    folds = read_folds(tcfg.artifacts)
    data_dir = resolve_data_dir(tcfg.data_dir, tcfg.profile)
    labels = centre_labels(data_dir, data.train_ids, cfg.column)
    _, codes = np.unique(labels, return_inverse=True)
    enabled = {n: s for n, s in tcfg.models.items() if s.enabled and (not cfg.models
                                                                        or n in cfg.models)}
    if not enabled:
        raise ValueError(f"loco: none of models {cfg.models} is enabled in the tabular config")
    scfg = SubgroupConfig(min_positives=cfg.min_positives, n_boot=cfg.n_boot, ci=cfg.ci,
                          seed=cfg.seed)
    out_dir = Path(cfg.out) if cfg.out else Path(cfg.artifacts) / "loco"
    aligned = folds.select("isic_id").join(pl.DataFrame({"isic_id": data.train_ids,
                                                         "row": np.arange(len(data.y))}),
                                           on="isic_id", how="left", maintain_order="left")
    models: dict[str, Any] = {}
    for name, spec in enabled.items():
        log.info("loco %s: %d centres of %r held out in turn", name, codes.max() + 1, cfg.column)
        res = cross_validate(data.X, data.y, codes, spec, data.features.names,
                             data.features.categorical, neg_ratio=tcfg.neg_ratio,
                             bags=tcfg.bags, seed=tcfg.seed, threads=tcfg.threads)
        cv = patient_cv(tcfg.artifacts, name + tcfg.suffix, folds)
        if cv is not None:  # folds row order -> the training rows' order
            cv = cv[np.argsort(aligned["row"].to_numpy())]
        write_parquet(pl.DataFrame({"isic_id": data.train_ids, "group": labels,
                                    "pred": res.oof}), out_dir / cfg.column / f"{name}.parquet")
        models[name] = {"pooled": {"loco_pauc": pauc(data.y, res.oof),
                                   "loco_auc": roc_auc(data.y, res.oof),
                                   **({"cv_pauc": pauc(data.y, cv), "cv_auc": roc_auc(data.y, cv)}
                                      if cv is not None else {})},
                        "groups": per_centre(labels, data.y, data.patient, res.oof, cv, scfg)}
    result = {"column": cfg.column, "data_dir": str(data_dir), "rows": int(len(data.y)),
              "positives": int(data.y.sum()), "fold_hash": fold_hash(folds),
              "tabular_profile": tcfg.profile, "min_positives": cfg.min_positives,
              "n_boot": cfg.n_boot, "ci": cfg.ci, "models": models}
    write_json(result, out_dir / f"{cfg.column}.json")
    save_config(cfg, out_dir / f"{cfg.column}.config.yaml")
    log.info("loco: wrote %s", out_dir / f"{cfg.column}.json")
    return result


def read_sections(artifacts: str | Path, folds_now: str) -> list[dict[str, Any]]:
    """Every ``<artifacts>/loco/*.json``, each marked when made on other folds than these."""
    out = []
    for path in sorted((Path(artifacts) / "loco").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["same_folds"] = doc.get("fold_hash") == folds_now
        out.append(doc)
    return out


def markdown(sections: list[dict[str, Any]]) -> list[str]:
    """Report lines: per column and model, LOCO beside the patient-grouped CV per centre."""
    lines = []
    for sec in sections:
        lines += [f"\n## Leave-one-`{sec['column']}`-out CV\n",
                  f"Each `{sec['column']}` level held out in turn; the tabular stage "
                  f"(profile `{sec['tabular_profile']}`) trained on the others. Beside it, the "
                  "patient-grouped CV's scores of the same rows. Intervals: "
                  f"{100 * sec['ci']:.0f}%, {sec['n_boot']} bootstrap replicates of the "
                  f"level's patients; fewer than {sec['min_positives']} positives: a dash."
                  + ("" if sec["same_folds"] else " (Its patient-grouped CV column was read "
                     "on other folds than the report's.)")]
        for name, m in sec["models"].items():
            p = m["pooled"]
            cv = (f"; patient-grouped CV pAUC {p['cv_pauc']:.4f}, AUC {p['cv_auc']:.4f}"
                  if "cv_pauc" in p else "")
            lines += [f"\n`{name}`: pooled LOCO pAUC {p['loco_pauc']:.4f}, AUC "
                      f"{p['loco_auc']:.4f}{cv}.\n",
                      "| held out | rows | patients | positives | LOCO pAUC | CV pAUC | LOCO AUC "
                      "| CV AUC | note |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
            for g in m["groups"]:
                lo, cv_c = g["loco"], g.get("cv", {})
                lines.append(f"| {g['group']} | {lo['rows']:,} | {lo['patients']:,} | "
                             f"{lo['positives']:,} | {fmt(lo, 'pauc')} | {fmt(cv_c, 'pauc')} | "
                             f"{fmt(lo, 'auc')} | {fmt(cv_c, 'auc')} | "
                             f"{'; '.join(lo['notes'])} |")
    return lines
