"""The monitor's report: ``report.md`` (what was checked, a table per window, the alerts, the
verification-bias note) and a PNG time series of the key figures, drawn as the CV report draws
(a ``matplotlib.figure.Figure``, no pyplot, written by :func:`isicstack.data.io.save_png`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from isicstack.data.io import save_png
from isicstack.monitoring.config import MonitorConfig


def _max_effect(w: dict[str, Any], families: tuple[str, ...]) -> float:
    vals = [c["effect"] for c in w["checks"] if c["family"] in families]
    return max(vals) if vals else float("nan")


def _review(w: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in w["checks"] if c["family"] == "review"), None)


def _fig(w: dict[str, Any], name: str, kind: str) -> tuple[float, list[float] | None]:
    o = w["outcomes"]
    if kind == "naive":
        return (o.get("naive") or {}).get(name, float("nan")), None
    got = (o.get("corrected") or {}).get(name) or {}
    return got.get("value", float("nan")), got.get("ci")


def plot_windows(windows: list[dict[str, Any]], out: Path, dpi: int) -> dict[str, str]:
    """One PNG, four panels over the windows: max PSI (inputs, crops, scores), review rate with
    its interval and the expected rate, sensitivity (corrected and naive), observed/expected."""
    x = np.array([w["window"] for w in windows])
    fig = Figure(figsize=(9, 8))
    axes = fig.subplots(4, 1, sharex=True)
    for label, fams in (("inputs", ("numeric", "categorical")), ("crops", ("crop",)),
                        ("scores", ("score",))):
        axes[0].plot(x, [_max_effect(w, fams) for w in windows], "o-", label=label)
    axes[0].axhline(0.1, color="grey", ls="--", lw=0.8)
    axes[0].set_ylabel("max PSI")
    axes[0].legend(loc="upper left", fontsize=8)
    rev = [_review(w) for w in windows]
    rate = [r["rate"] if r else np.nan for r in rev]
    lo = [r["rate"] - r["interval"][0] if r else 0 for r in rev]
    hi = [r["interval"][1] - r["rate"] if r else 0 for r in rev]
    axes[1].errorbar(x, rate, yerr=[lo, hi], fmt="o-", capsize=3, label="review rate")
    axes[1].plot(x, [r["expected"] if r else np.nan for r in rev], "k--", lw=0.8,
                 label="expected")
    axes[1].set_ylabel("review rate")
    axes[1].legend(loc="upper left", fontsize=8)
    for kind, style in (("corrected", "o-"), ("naive", "s:")):
        vals = [_fig(w, "sensitivity", kind) for w in windows]
        yv = np.array([v for v, _ in vals], dtype=float)
        err = np.array([[v - ci[0], ci[1] - v] if ci else [0, 0] for v, ci in vals]).T
        axes[2].errorbar(x, yv, yerr=err, fmt=style, capsize=3, label=f"sensitivity ({kind})")
    axes[2].set_ylabel("sensitivity")
    axes[2].set_ylim(0, 1.05)
    axes[2].legend(loc="lower left", fontsize=8)
    cal = [next((c for c in w["checks"] if c["family"] == "calibration"), None) for w in windows]
    axes[3].plot(x, [c["ratio"] if c else np.nan for c in cal], "o-")
    axes[3].axhline(1.0, color="grey", ls="--", lw=0.8)
    axes[3].set_ylabel("observed / expected")
    axes[3].set_xlabel("window")
    for w in windows:
        if w["alerts"]:
            for ax in axes:
                ax.axvspan(w["window"] - 0.4, w["window"] + 0.4, color="#fdd", zorder=0)
    return {"windows": save_png(fig, out / "monitor.png", dpi)}


def _ci(ci: list[float] | None) -> str:
    return f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _fmt(v: float | None) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3f}"


def markdown(doc: dict[str, Any], cfg: MonitorConfig, images: dict[str, str]) -> str:
    """The report's text."""
    windows = doc["windows"]
    lines = ["# Monitor report", "",
             f"Log `{doc['log']}` ({doc['lesions']} lesions), bundle `{doc['bundle']}` "
             f"(version {doc['version'] or 'unknown'}), windows of `{doc['window']}`.", "",
             "## What is checked", "",
             "Per window, against the bundle's reference statistics of the training data: "
             "each numeric input, crop statistic (size, brightness, mean colour) and score "
             "(per scorer) by PSI on the reference deciles and a two-sample KS test against the "
             "reference sample; each categorical input by PSI and a chi-square test, and its "
             "share in categories the reference never saw; missing and out-of-range rates; the "
             "review rate against the expected one (Wilson interval); with outcomes, "
             "sensitivity, specificity, AUC, pAUC and observed vs expected positives.", "",
             f"Alarm rule: Holm over all tests of a window at family-wise error {cfg.alpha}, "
             f"and an effect floor (PSI >= {cfg.psi_floor} and >= {cfg.psi_noise:g} x the PSI "
             "a clean window of its effective size shows by chance, missing-rate change >= "
             f"{cfg.missing_floor}, out of range >= {cfg.range_floor}, review rate off by >= "
             f"{cfg.review_floor:.0%} of the expected, observed/expected beyond "
             f"{cfg.calibration_floor}x); unseen categories on >= {cfg.unseen_floor:.0%} of a "
             "window's lesions. Lesions of one patient are not independent: each test uses the "
             "effective sample size (design effect from the within-patient correlation)"
             + ("" if cfg.cluster else " (turned off: cluster=false)") + ".", "",
             "**Verification bias.** Outcomes exist for lesions someone chose to biopsy (mostly "
             "flagged ones) and a random audit sample. Figures from verified lesions alone "
             "(*naive*) overstate sensitivity. The *corrected* figures weight each verified "
             "lesion by the inverse of its flag stratum's verified share in the window "
             "(Begg-Greenes); intervals are a patient bootstrap. Without audited unflagged "
             "lesions the correction is undefined and only the naive figures are shown.", ""]
    if images:
        lines += [f"![per window]({images['windows']})", ""]
    lines += ["## Windows", "",
              "| window | lesions | patients | max PSI inputs | max PSI crops | review rate "
              "(expected) | sensitivity corrected (naive) | specificity corrected | AUC "
              "corrected | O/E | alerts |", "|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|"]
    for w in windows:
        r = _review(w)
        rv = f"{r['rate']:.3f}{_ci(r['interval'])} ({r['expected']:.3f})" if r else "–"
        sens, sci = _fig(w, "sensitivity", "corrected")
        spec, spci = _fig(w, "specificity", "corrected")
        auc, aci = _fig(w, "auc", "corrected")
        cal = next((c for c in w["checks"] if c["family"] == "calibration"), None)
        lines.append(
            f"| {w['window']} | {w['lesions']} | {w['patients']} | "
            f"{_fmt(_max_effect(w, ('numeric', 'categorical')))} | "
            f"{_fmt(_max_effect(w, ('crop',)))} | {rv} | {_fmt(sens)}{_ci(sci)} "
            f"({_fmt(_fig(w, 'sensitivity', 'naive')[0])}) | {_fmt(spec)}{_ci(spci)} | "
            f"{_fmt(auc)}{_ci(aci)} | {_fmt(cal['ratio'] if cal else None)} | "
            f"{len(w['alerts'])} |")
    lines += ["", "## Alerts", ""]
    alerts = doc["alerts"]
    if not alerts:
        lines.append("None.")
    for a in alerts:
        p = "rule" if a["p"] is None else f"p = {a['p']:.2g}, Holm-rejected"
        lines.append(f"- window {a['window']}: **{a['family']} `{a['name']}`**: effect "
                     f"{a['effect']:.3g} (floor {a['floor']:.3g}; {p})")
    notes = [w for w in windows if w["outcomes"].get("note")]
    lines += [f"\nWindow {w['window']}: {w['outcomes']['note']}." for w in notes]
    lines += [f"\nLeft out: {x}." for x in doc["left_out"]]
    return "\n".join(lines) + "\n"
