"""``isic monitor``: the prediction log, window by window, against the bundle's reference.

The alarm rule: within a window, every check with a p-value (drift of each input, crop
statistic and score; missing and out-of-range rates; review rate; calibration) is one family,
corrected by Holm at ``alpha`` (family-wise: the chance that a clean window raises any alert
stays below ``alpha`` whatever the dependence between tests; Benjamini-Hochberg would bound the
share of false findings instead, which says nothing about a pager going off). A rejected test
is an alert only when its effect also reaches its floor (PSI >= 0.1, ...), so a large window
does not alarm on trivia. Unseen categories and configured minimums (sensitivity ...) are rules.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.io import read_json_object, write_json, write_text
from isicstack.ledger.store import log_run
from isicstack.monitoring import drift, outcomes, stats
from isicstack.monitoring.config import MonitorConfig
from isicstack.monitoring.report import markdown, plot_windows
from isicstack.serving.manifest import BUNDLE_FILE, REFERENCE_FILE
from isicstack.serving.predlog import read_outcomes, read_predictions
from isicstack.serving.registry import resolve
from isicstack.settings.command import CommandExit
from isicstack.settings.layers import ConfigError

log = logging.getLogger(__name__)

ALERT_EXIT = 3
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
REQUIRED_REFERENCE = ("numeric", "categorical")


def load_reference(bundle: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``reference.json`` (checked) and ``bundle.json`` ({} when absent) of a bundle folder."""
    path = bundle / REFERENCE_FILE
    ref = read_json_object(path, "no reference.json (a bundle folder holds bundle.json and "
                           "reference.json: `isic bundle`)")
    if ref.get("format") != 1:
        raise ValueError(f"{path}: field 'format' must be 1, got {ref.get('format')}")
    for key in REQUIRED_REFERENCE:
        if not isinstance(ref.get(key), dict):
            raise ValueError(f"{path}: field '{key}' missing or not an object")
    for name, stat in ref["numeric"].items():
        if not isinstance(stat, dict) or len(stat.get("edges") or []) < 2:
            raise ValueError(f"{path}: field 'numeric.{name}.edges' needs at least 2 values")
    manifest = bundle / BUNDLE_FILE
    return ref, read_json_object(manifest, "") if manifest.is_file() else {}


def window_ids(ts: np.ndarray, window: str) -> np.ndarray:
    """Each row's window: by count (``1000``) or by duration (``7d``) from the first row."""
    text = window.strip().lower()
    if text.isdigit() and int(text) > 0:
        return np.arange(ts.size) // int(text)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text)
    if m is None or float(m.group(1)) <= 0:
        raise ConfigError(f"window={window!r}: a lesion count (1000) or a duration (7d, 12h)")
    seconds = float(m.group(1)) * UNITS[m.group(2)]
    return ((ts - ts.min()) // seconds).astype(np.int64) if ts.size else ts.astype(np.int64)


def load_log(path: str) -> pl.DataFrame:
    """The log's predictions (the latest per lesion) with inputs as columns and outcomes joined
    (``label`` null = not verified; ``reason`` biopsy/audit)."""
    preds = read_predictions(path)
    if preds.is_empty():
        return preds
    preds = preds.unique("lesion_id", keep="last", maintain_order=True).sort("ts", "id")
    inputs = pl.DataFrame([json.loads(s) for s in preds.get_column("inputs")],
                          infer_schema_length=None)
    clash = [c for c in inputs.columns if c in preds.columns]
    frame = pl.concat([preds.drop("inputs"), inputs.drop(clash)], how="horizontal")
    seen = (read_outcomes(path).unique("lesion_id", keep="last")
            .select("lesion_id", "label", "reason"))
    return frame.join(seen, on="lesion_id", how="left")


def finish(checks: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Holm over the window's tests; alert = rejected and effect >= floor (rules: effect)."""
    tested = [c for c in checks if c["p"] is not None]
    for c, rejected in zip(tested, stats.holm([c["p"] for c in tested], alpha), strict=True):
        c["rejected"] = rejected
    for c in checks:
        c["alert"] = bool((c["rejected"] or c["p"] is None) and c["effect"] >= c["floor"])
    return checks


def analyse_window(frame: pl.DataFrame, reference: dict[str, Any], cfg: MonitorConfig
                   ) -> dict[str, Any]:
    """Every check and the outcome figures of one window."""
    checks = drift.window_drift(frame, reference, cfg)
    groups = drift.patient_codes(frame)
    label = frame.get_column("label").cast(pl.Float64).fill_null(np.nan).to_numpy()
    risk = frame.get_column("risk").cast(pl.Float64).fill_null(np.nan).to_numpy()
    figures = outcomes.outcome_figures(
        frame.get_column("score").to_numpy(), risk, frame.get_column("flag").to_numpy() > 0,
        label, groups, cfg)
    cal = outcomes.calibration_check(risk, label, groups, cfg)
    checks += ([cal] if cal else []) + outcomes.threshold_checks(figures, cfg)
    finish(checks, cfg.alpha)
    ts = frame.get_column("ts")
    return {"lesions": frame.height, "patients": int(np.unique(groups).size),
            "start": float(ts.min()), "end": float(ts.max()),
            "audited": int((frame.get_column("reason") == "audit").sum()),
            "outcomes": figures, "checks": checks,
            "alerts": [c for c in checks if c["alert"]]}


def describe(c: dict[str, Any]) -> str:
    """One line for an alert."""
    p = "" if c["p"] is None else f", Holm-rejected p={c['p']:.2g}"
    return f"{c['family']} {c['name']}: effect {c['effect']:.3g} (floor {c['floor']:.3g}{p})"


def run(cfg: MonitorConfig) -> dict[str, Any]:
    """Write report.md, monitor.json and the PNG time series; exit 3 on an alert."""
    # a models:/ ref is fetched (and checked) from the registry of the ledger of `artifacts`
    bundle = resolve(cfg.bundle, cfg.artifacts) if cfg.bundle.startswith("models:/") \
        else Path(cfg.bundle)
    reference, manifest = load_reference(bundle)
    frame = load_log(cfg.log)
    out = Path(cfg.out) if cfg.out else Path(cfg.artifacts) / "monitor"
    ids = window_ids(frame.get_column("ts").to_numpy(), cfg.window) if frame.height else []
    frame = frame.with_columns(pl.Series("window", ids, dtype=pl.Int64))
    windows, left_out = [], []
    for (w,), part in frame.group_by("window", maintain_order=True):
        if part.height < cfg.min_lesions:
            left_out.append(f"window {w}: {part.height} lesion(s) < min_lesions")
            continue
        windows.append({"window": int(w), **analyse_window(part, reference, cfg)})
    doc = {"log": cfg.log, "bundle": str(bundle), "version": manifest.get("version"),
           "window": cfg.window, "alpha": cfg.alpha, "lesions": frame.height,
           "left_out": left_out, "windows": windows,
           "alerts": [{"window": w["window"], **a} for w in windows for a in w["alerts"]]}
    images = plot_windows(windows, out, cfg.dpi) if windows else {}
    doc["images"] = images
    write_json(doc, out / "monitor.json")
    write_text(markdown(doc, cfg, images), out / "report.md")
    log_run("monitor", out, cfg.artifacts, cfg, metrics=ledger_metrics(windows))
    log.info("monitor: %d window(s), %d alert(s): %s", len(windows), len(doc["alerts"]),
             out / "report.md")
    if doc["alerts"] and cfg.fail_on_alert:
        lines = [f"window {a['window']}: {describe(a)}" for a in doc["alerts"]]
        print("\n".join(lines))
        raise CommandExit(ALERT_EXIT, f"{len(lines)} alert(s) in "
                          f"{len({a['window'] for a in doc['alerts']})} window(s); see "
                          f"{out / 'report.md'}", doc)
    return doc


def ledger_metrics(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-window series (the window index is the step) for the run ledger."""
    series: dict[str, dict[int, float]] = {"alerts": {}, "lesions": {}}
    for w in windows:
        i = w["window"]
        series["alerts"][i] = len(w["alerts"])
        series["lesions"][i] = w["lesions"]
        for c in w["checks"]:
            if c["family"] in ("review", "calibration", "score"):
                key = f"{c['family']}.{c['name'].replace('/', '_')}"
                series.setdefault(key, {})[i] = c.get("rate", c.get("ratio", c["effect"]))
        corrected = w["outcomes"].get("corrected") or {}
        for name, fig in corrected.items():
            series.setdefault(f"corrected.{name}", {})[i] = fig["value"]
    return series
