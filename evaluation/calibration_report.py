"""The calibration section of the report: Brier score / log loss before and after, calibration
slope, a reliability diagram with its patient-bootstrap band, per model.

It reads what ``isic calibrate`` wrote (``<artifacts>/calibration/oof/<model>.parquet``: the raw
score, the prior-corrected one and the nested calibrated one) and never fits a map itself, so
the report stays a reader of artifacts. On synthetic data the oracle's true probability is the
floor every Brier score is compared with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from isicstack.data.io import save_png
from isicstack.data.layout import ORACLE, oof_path
from isicstack.data.metric import fold_scores, pauc
from isicstack.data.provenance import file_sha256
from isicstack.data.sections import left_out_lines, skipped, skipped_lines
from isicstack.evaluation import calibration_metrics as cm
from isicstack.ledger.result import METRICS, read_result

TITLE = "Calibration: how far a score is from a probability"

STAGES = {"raw": "model score", "prior": "prior-corrected", "calibrated": "calibrated (nested)",
          "oracle": "oracle (true probability)"}


def oracle_prob(data_dir: Path, folds: pl.DataFrame) -> np.ndarray | None:
    """The synthetic generator's true probability of each fold row, or None (real data)."""
    path = Path(data_dir) / ORACLE
    if not path.is_file():
        return None
    prob = folds.select("isic_id").join(pl.read_parquet(path, columns=["isic_id", "prob"]),
                                        on="isic_id", how="left", maintain_order="left")["prob"]
    return None if prob.null_count() else prob.to_numpy()


def fold_pauc_shift(y: np.ndarray, a: np.ndarray, b: np.ndarray, fold: np.ndarray) -> float:
    """Largest per-fold |pAUC(a) - pAUC(b)|: 0 when a map is monotone within each fold."""
    diffs = [abs(fa - fb) for k in np.unique(fold)
             if (fa := fold_scores(y[fold == k], a[fold == k])["pauc"]) is not None
             and (fb := fold_scores(y[fold == k], b[fold == k])["pauc"]) is not None]
    return float(max(diffs, default=0.0))


def summarise(y: np.ndarray, cols: dict[str, np.ndarray], patients: np.ndarray,
              fold: np.ndarray, oracle: np.ndarray | None, n_boot: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Losses of raw / prior / calibrated (and oracle) scores with intervals; the differences
    calibrated - raw and the Brier ratio calibrated / oracle on the same replicates."""
    preds = {k: cols[k] for k in ("raw", "prior", "calibrated")}
    if oracle is not None:
        preds["oracle"] = oracle
    out: dict[str, Any] = {"losses": cm.losses(y, preds, patients, n_boot, seed, reference="raw")}
    if oracle is not None:
        vs = cm.losses(y, {"calibrated": preds["calibrated"], "raw": preds["raw"],
                           "oracle": oracle}, patients, n_boot, seed, reference="oracle")
        out["vs_oracle"] = {k: {m: vs[k][m] for m in ("brier_ratio", "brier_ratio_ci")
                                if m in vs[k]} for k in ("raw", "calibrated")}
    out["slope"] = {k: cm.intercept_slope(y, p) for k, p in preds.items() if k != "prior"}
    out["monotone_floor_brier"] = cm.monotone_floor(y, cols["raw"])
    out["pauc"] = {k: pauc(y, cols[k]) for k in ("raw", "calibrated")}
    out["fold_pauc_max_shift"] = fold_pauc_shift(y, cols["raw"], cols["calibrated"], fold)
    return out


def read_calibrated(folder: Path, name: str, folds: pl.DataFrame) -> dict[str, np.ndarray]:
    """``raw``, ``prior`` and ``calibrated`` columns of a model in fold row order."""
    path = folder / "oof" / f"{name}.parquet"
    df = folds.select("isic_id").join(pl.read_parquet(path), on="isic_id", how="left",
                                      maintain_order="left")
    if df["pred"].null_count():
        raise ValueError(f"{path}: does not cover the rows of folds.parquet; rerun "
                         "`isic calibrate`")
    return {"raw": df["raw"].to_numpy(), "prior": df["prior"].to_numpy(),
            "calibrated": df["pred"].to_numpy()}


def stale(artifacts: Path, folder: Path, name: str) -> str:
    """Why the calibration of ``name`` no longer matches its OOF file ('' when it does)."""
    doc = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    src = oof_path(artifacts, name)
    if not src.is_file() or file_sha256(src) != doc.get("oof_sha256"):
        return "its OOF file changed since `isic calibrate`; rerun it"
    return ""


def section(artifacts: str | Path, folds: pl.DataFrame, data_dir: Path, out: Path, dpi: int,
            bins: int = 10, n_boot: int = 200, seed: int = 0) -> dict[str, Any] | None:
    """Per-model summary and the reliability PNG, or skipped when nothing was calibrated."""
    folder = Path(artifacts) / "calibration"
    names = sorted(p.stem for p in (folder / "oof").glob("*.parquet"))
    if not names:
        return skipped("no calibrated scores: run `isic calibrate` (then the report again)")
    y = folds["target"].to_numpy().astype(np.int64)
    patients, fold = folds["patient_id"].to_numpy(), folds["fold"].to_numpy()
    oracle = oracle_prob(data_dir, folds)
    models, curves, left_out = {}, {}, {}
    for name in names:
        if (why := stale(Path(artifacts), folder, name)):
            left_out[name] = why
            continue
        cols = read_calibrated(folder, name, folds)
        models[name] = summarise(y, cols, patients, fold, oracle, n_boot, seed)
        curves[name] = {k: cm.reliability(y, cols[k], patients, bins, n_boot, seed)
                        for k in ("prior", "calibrated")}
    method = read_result(folder).details.get("method") if (folder / METRICS).is_file() else None
    image = plot_reliability(curves, out / "reliability.png", dpi) if curves else None
    return {"models": models, "curves": curves, "left_out": left_out, "image": image,
            "method": method, "n_boot": n_boot, "oracle": oracle is not None}


def plot_reliability(curves: dict[str, dict[str, dict]], path: Path, dpi: int) -> str:
    """Observed rate vs predicted risk per bin (log-log), the calibrated curve with its band."""
    cols = min(3, len(curves))
    rows = -(-len(curves) // cols)
    fig = Figure(figsize=(4.3 * cols, 4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, c) in zip(axes.flat, curves.items(), strict=False):
        cal, pri = c["calibrated"], c["prior"]
        floor = max(1e-5, min(min(cal["predicted"]), min(pri["predicted"])) / 2)
        lo = np.maximum(np.nan_to_num(cal["observed_lo"], nan=floor), floor)
        hi = np.maximum(np.nan_to_num(cal["observed_hi"], nan=floor), floor)
        ax.fill_between(cal["predicted"], lo, hi, color="#9ecae1", alpha=0.5,
                        label="95% band (patients)")
        ax.plot(cal["predicted"], np.maximum(cal["observed"], floor), "o-", color="#08519c",
                label="calibrated")
        ax.plot(pri["predicted"], np.maximum(pri["observed"], floor), "s--", color="#e6550d",
                label="prior-corrected only")
        zero = np.asarray(cal["observed"]) == 0  # no positive in the bin: drawn at the bottom
        ax.plot(np.asarray(cal["predicted"])[zero], np.full(int(zero.sum()), floor), "o",
                mfc="white", color="#08519c", label="no positive in bin" if zero.any() else None)
        ax.plot([floor, 1], [floor, 1], ":", color="grey")
        ax.set(xscale="log", yscale="log", title=name, xlabel="predicted risk (bin mean)",
               ylabel="observed rate")
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    fig.tight_layout()
    return save_png(fig, path, dpi)


def _ci(d: dict[str, Any], key: str, digits: int = 5) -> str:
    text = f"{d[key]:.{digits}f}"
    if f"{key}_ci" in d:
        lo, hi = d[f"{key}_ci"]
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def markdown(sec: dict[str, Any] | None) -> list[str]:
    """Report lines: Brier scores per model (score, prior-corrected, calibrated, floor, oracle),
    then log loss and calibration slope, then the diagram."""
    if not sec:
        return []
    if (done := skipped_lines(TITLE, sec)) is not None:
        return done
    lines = [f"\n## {TITLE}\n"]
    models = sec["models"]
    lines.append(f"Map: `{sec['method']}` after the prior correction for each model's training "
                 "class ratio. *Calibrated* scores are nested: fold k is mapped by a map fitted "
                 f"on the other folds. 95% intervals from {sec['n_boot']} patient-bootstrap "
                 "replicates; a change is calibrated minus score on the same replicates. *Floor*: "
                 "the best monotone map of the score, fitted on the same rows (optimistic): the "
                 "gap from it to the oracle is ranking, not calibration.")
    first = next(iter(models.values()), None)
    if first and "oracle" in first["losses"]:
        o = first["losses"]["oracle"]
        lines.append(f"\nOracle (the generator's true probability): Brier {_ci(o, 'brier')}, "
                     f"log loss {_ci(o, 'log_loss', 4)}.")
    ratio = any("vs_oracle" in m for m in models.values())
    lines += ["\n| model | Brier: score | prior-corrected | calibrated | change | floor |"
              + (" calibrated / oracle |" if ratio else ""),
              "|---|---:|---:|---:|---:|---:|" + ("---:|" if ratio else "")]
    for name, m in models.items():
        L = m["losses"]
        lines.append(f"| {name} | {_ci(L['raw'], 'brier')} | {_ci(L['prior'], 'brier')} | "
                     f"{_ci(L['calibrated'], 'brier')} | {_ci(L['calibrated'], 'brier_diff')} | "
                     f"{m['monotone_floor_brier']:.5f} |"
                     + (f" {_ci(m['vs_oracle']['calibrated'], 'brier_ratio', 3)} |"
                        if "vs_oracle" in m else ""))
    lines += ["\n| model | log loss: score | calibrated | change | mean risk (calibrated) "
              "| prevalence | slope: score | calibrated |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in models.items():
        L, sl = m["losses"], m["slope"]
        lines.append(f"| {name} | {_ci(L['raw'], 'log_loss', 4)} | "
                     f"{_ci(L['calibrated'], 'log_loss', 4)} | "
                     f"{_ci(L['calibrated'], 'log_loss_diff', 4)} | "
                     f"{sl['calibrated']['mean_risk']:.4f} | {sl['calibrated']['prevalence']:.4f} "
                     f"| {sl['raw']['slope']:.2f} | {sl['calibrated']['slope']:.2f} |")
    shift = max((m["fold_pauc_max_shift"] for m in models.values()), default=0.0)
    lines.append(f"\nSlope: of a logistic fit of the label on the score's logit (1: risks spread "
                 f"right; < 1: too extreme). Largest per-fold pAUC change from calibrating: "
                 f"{shift:.1e} (each map is monotone; the pooled OOF pAUC can move a little, "
                 "since each fold has its own map).")
    lines += left_out_lines(sec["left_out"])
    if sec.get("image"):
        lines.append(f"\n![reliability diagram]({sec['image']})")
    return lines
