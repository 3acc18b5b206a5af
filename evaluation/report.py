"""``isic report``: CV table, ROC curves, score distributions and operating points of every OOF.

Reads artifacts (``oof/*.parquet`` + ``folds.parquet``, and the stack's metrics when present),
so it runs after any subset of stages and never retrains a stage. From the data folder it reads
only the metadata (drift check) and, for synthetic data, ``oracle.parquet``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from isicstack.calibration import operating_point as opoint
from isicstack.calibration.scores import STACK, model_scores
from isicstack.data.folds import folds_data_dir, read_folds
from isicstack.data.io import DataError, save_png, write_json, write_text
from isicstack.data.layout import run_dir
from isicstack.data.metric import MIN_TPR, fmt_score, fold_summary, logit
from isicstack.data.predictions import discover, read_run_oof
from isicstack.data.provenance import fold_hash, read_provenance
from isicstack.data.sections import left_out_lines, skipped, skipped_lines
from isicstack.evaluation import clinical, drift
from isicstack.evaluation import oracle as oracle_corr
from isicstack.evaluation.config import ReportConfig
from isicstack.explain import report_section as gradcam
from isicstack.ledger.result import METRICS, read_result
from isicstack.ledger.store import log_run

log = logging.getLogger(__name__)

PLOTS = {"cv": "CV pAUC per model", "roc": "ROC curves", "scores": "score distributions"}


def load_models(cfg: ReportConfig, folds: Any) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """OOF scores by name; discovered files that do not match the folds are left out (with
    why), not fatal."""
    names = cfg.models or discover(cfg.artifacts, include_stack=True, include_parts=True)
    preds, left_out = {}, {}
    for name in names:
        try:
            preds[name] = read_run_oof(cfg.artifacts, name, folds)
        except (DataError, FileNotFoundError) as err:
            if cfg.models:
                raise
            log.warning("report: leaving %s out: %s", name, err)
            left_out[name] = str(err)
    return preds, left_out


def _nan(x: float | None) -> float:
    """A plottable number: a fold score that is undefined (single-class folds) is NaN."""
    return float("nan") if x is None else x


def plot_cv(summary: dict[str, dict], path: Path, dpi: int) -> str:
    """Fold pAUC mean ± std (bars) and pooled OOF pAUC (dots) per model."""
    names = list(summary)
    fig = Figure(figsize=(7, 0.5 * len(names) + 1.5))
    ax = fig.subplots()
    pos = np.arange(len(names))
    ax.barh(pos, [_nan(summary[n]["fold_pauc_mean"]) for n in names],
            xerr=[_nan(summary[n]["fold_pauc_std"]) for n in names], color="#9ecae1",
            label="fold mean ± std")
    ax.plot([summary[n]["oof_pauc"] for n in names], pos, "o", color="#08519c", label="OOF")
    ax.set_yticks(pos, names)
    ax.set_xlim(0, 0.2)
    ax.set_xlabel("pAUC (TPR ≥ 0.8), max 0.2")
    ax.legend(loc="lower right")
    return save_png(fig, path, dpi)


def plot_roc(y: np.ndarray, preds: dict[str, np.ndarray], path: Path, dpi: int) -> str:
    """Full ROC and a zoom on the scored region, which is shaded."""
    fig = Figure(figsize=(12, 5))
    axes = fig.subplots(1, 2)
    for name, p in preds.items():
        fpr, tpr, _ = roc_curve(y, p)
        for ax in axes:
            ax.plot(fpr, tpr, lw=1.3, label=name)
    for ax, ylim, title in ((axes[0], (0, 1), "ROC"), (axes[1], (MIN_TPR - 0.02, 1.0),
                                                       "pAUC region (TPR ≥ 0.8)")):
        ax.axhspan(MIN_TPR, 1.0, color="orange", alpha=0.15, label="pAUC region")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlim=(0, 1), ylim=ylim, xlabel="false positive rate",
               ylabel="true positive rate", title=title)
    axes[1].legend(loc="lower right", fontsize=8)
    return save_png(fig, path, dpi)


def plot_scores(y: np.ndarray, preds: dict[str, np.ndarray], path: Path, dpi: int,
                bins: int) -> str:
    """Positive vs negative score histograms (density, log y: positives are ~0.1% of rows).

    Probabilities are binned on the logit scale: most of them sit near 0, where the ranking of
    the pAUC region is decided.
    """
    cols = min(3, len(preds))
    rows = -(-len(preds) // cols)
    fig = Figure(figsize=(4.5 * cols, 3.3 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, p) in zip(axes.flat, preds.items(), strict=False):
        prob = bool(((p >= 0) & (p <= 1)).all())
        x = logit(p) if prob else p
        edges = np.histogram_bin_edges(x, bins=bins)
        ax.hist(x[y == 0], bins=edges, density=True, alpha=0.6, label="negative")
        ax.hist(x[y == 1], bins=edges, density=True, alpha=0.6, label="positive")
        ax.set(yscale="log", title=name, xlabel="logit(score)" if prob else "score",
               ylabel="density (log)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(preds):]:
        ax.axis("off")
    fig.tight_layout()
    return save_png(fig, path, dpi)


def markdown(info: dict[str, Any], images: dict[str, str], top: int = 10) -> str:
    """The report page: header, CV table, stack notes, operating points, oracle, drift, images."""
    lines = [f"# isicstack CV report\n\nartifacts: `{info['artifacts']}`; {info['rows']} rows, "
             f"{info['positives']} positives, {info['n_folds']} folds. pAUC is over TPR ≥ 0.8 "
             "(max 0.2); all scores are out-of-fold. *OOF pAUC* is pooled over every row of "
             "every fold; *fold pAUC* is the mean (± sd) of the per-fold figures.\n",
             "| model | OOF pAUC | OOF AUC | fold pAUC mean ± std | fold AUC mean ± std |",
             "|---|---:|---:|---:|---:|"]
    tuned = info.get("tuned") or {}
    for name, m in info["models"].items():
        mark = " †" if name in tuned else ""
        lines.append(f"| {name}{mark} | {m['oof_pauc']:.4f} | {m['oof_auc']:.4f} | "
                     f"{fmt_score(m['fold_pauc_mean'])} ± {fmt_score(m['fold_pauc_std'])} | "
                     f"{fmt_score(m['fold_auc_mean'])} ± {fmt_score(m['fold_auc_std'])} |")
    if not info["models"]:
        lines.append("\nNo OOF predictions found yet: run `make train-tabular` first.")
    lines += tuned_notes(tuned)
    stack = info.get("stack")
    if stack:
        lines += stack_notes(stack)
        oracle = stack.get("oracle")
        if oracle:
            lines.append(f"Oracle (true probability) pAUC {oracle['oracle_pauc']:.4f}; the stack "
                         f"reaches {100 * oracle['stack_fraction']:.1f}% of it.")
    points = info.get("operating_points", {})
    lines += skipped_lines("Operating points", points) or opoint.markdown(points)
    lines += clinical.markdown(info.get("clinical"))
    lines += oracle_corr.markdown(info.get("oracle_corr"))
    lines += drift.markdown(info.get("drift"), top)
    lines += left_out_lines(info["left_out"])
    lines += [f"\n## {PLOTS[k]}\n\n![{PLOTS[k]}]({v})" for k, v in images.items()]
    lines += gradcam.markdown(info.get("gradcam"))
    return "\n".join(lines) + "\n"


def tuned_runs(artifacts: str, names: list[str], folds_now: str) -> dict[str, dict]:
    """Runs whose config merged tuned parameters (``provenance.json`` key ``tuned``), and
    whether the sweep chose its trial on the folds this CV uses (then the CV is optimistic)."""
    out = {}
    for name in names:
        rec = read_provenance(run_dir(artifacts, name)).get("tuned")
        if rec:
            by = rec.get("tuned_by") or {}
            out[name] = {**rec, "same_folds": by.get("fold_hash") == folds_now
                         if by.get("fold_hash") else None}
    return out


def tuned_notes(tuned: dict[str, dict]) -> list[str]:
    """Footnotes for the CV table's † marks."""
    lines = []
    for name, rec in tuned.items():
        by = rec.get("tuned_by") or {}
        src = (f"study `{by['study']}`, trial {by['trial']} of {by['finished_trials']}"
               if by.get("study") else f"`{rec['file']}` (no study recorded)")
        where = {True: "on these same folds, so its CV is optimistic (the best of the trials "
                       "was chosen on it); check it on other fold seeds (`make evaluate`)",
                 False: "on other folds", None: "on folds not recorded"}[rec["same_folds"]]
        lines.append(f"\n† `{name}`: tuned parameters from {src}, chosen {where}.")
    return lines


def stack_notes(stack: dict[str, Any]) -> list[str]:
    """How the stack's CV row was made: nested method choice, or one configured method."""
    lines = [f"\nStack: method `{stack.get('chosen')}` (refit on all rows for the test set) "
             f"over {stack.get('input_names')}."]
    cv, best = stack.get("cv") or {}, stack.get("best_of_methods") or {}
    if cv.get("kind") == "nested":
        picks = ", ".join(f"fold {k}: {m}" for k, m in cv["picks"].items())
        lines.append(f"Its CV row is nested: each fold is scored by the method chosen on the "
                     f"other folds ({picks}), on one score scale. The chosen method's own CV, "
                     f"picked on the same OOF scores (optimistic): OOF pAUC "
                     f"{best.get('oof_pauc', float('nan')):.4f}.")
    return lines


def stack_details(artifacts: str) -> dict[str, Any] | None:
    """What the stack notes show (method, inputs, oracle, how its CV was made), read from its
    run's result; None without a stack run (or, said in the log, with one that does not read)."""
    rdir = run_dir(artifacts, STACK)
    if not (rdir / METRICS).is_file():
        return None
    try:
        details = read_result(rdir).details
    except ValueError as err:
        log.warning("report: stack notes left out: %s", err)
        return None
    return {k: details.get(k) for k in ("chosen", "input_names", "oracle", "cv",
                                        "best_of_methods")}


def run(cfg: ReportConfig) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and the PNG plots under the report folder."""
    folds = read_folds(cfg.artifacts)
    out = Path(cfg.out) if cfg.out else Path(cfg.artifacts) / "report"
    y = folds.get_column("target").to_numpy().astype(np.int64)
    fold = folds.get_column("fold").to_numpy()
    preds, left_out = load_models(cfg, folds)
    info: dict[str, Any] = {
        "artifacts": str(cfg.artifacts), "rows": len(y), "positives": int(y.sum()),
        "n_folds": int(np.unique(fold).size), "left_out": left_out,
        "models": {n: fold_summary(y, p, fold) for n, p in preds.items()}}
    info["operating_points"] = skipped(
        "disabled (operating_point.enabled=false)" if not cfg.operating_point.enabled
        else "no OOF predictions" if not preds else "no positives in the folds")
    if preds and cfg.operating_point.enabled and y.any():
        patients = folds.get_column("patient_id").to_numpy()
        # on the scale a deployed model outputs (the stack's nested OOF has a per-fold scale
        # that never exists at inference): the threshold is the one predict and the app apply
        info["operating_points"] = {
            n: opoint.operating_point(y, model_scores(cfg.artifacts, n, folds) if n == STACK
                                      else p, patients, cfg.operating_point)
            for n, p in preds.items()}
    data_dir = folds_data_dir(cfg.data_dir, cfg.artifacts, cfg.profile)
    info["oracle_corr"] = oracle_corr.oracle_section(data_dir, folds.get_column("isic_id"), preds)
    info["drift"] = (drift.drift_section(data_dir, cfg.drift) if cfg.drift.enabled
                     else skipped("disabled (drift.enabled=false)"))
    stack = stack_details(cfg.artifacts)
    if stack is not None:
        info["stack"] = stack
    info["tuned"] = tuned_runs(cfg.artifacts, list(preds), fold_hash(folds))
    info["clinical"] = clinical.section(cfg.clinical, cfg.artifacts, data_dir, folds, out,
                                        cfg.dpi)
    images = {}
    if preds:
        images = {"cv": plot_cv(info["models"], out / "cv.png", cfg.dpi),
                  "roc": plot_roc(y, preds, out / "roc.png", cfg.dpi),
                  "scores": plot_scores(y, preds, out / "scores.png", cfg.dpi, cfg.bins)}
    info["images"] = images
    info["gradcam"] = gradcam.gradcam_section(cfg.gradcam, cfg.artifacts, data_dir, folds, preds,
                                              out, cfg.dpi)
    write_json(info, out / "report.json")
    write_text(markdown(info, images, cfg.drift.top), out / "report.md")
    log_run("report", out, cfg.artifacts, cfg, metrics={  # models.<name>.oof_pauc
        "models": {n: {"oof_pauc": m["oof_pauc"]} for n, m in info["models"].items()}})
    log.info("report: wrote %s (%d model(s))", out / "report.md", len(preds))
    return info
