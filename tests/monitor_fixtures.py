"""A simulated deployment for the monitor's tests: lesions in patients (patient-level age, sex,
centre, skin; lesion-level size and crop), a model whose calibrated risk is the truth on the
reference distribution, a reference.json in the shared design's format, and a prediction log
with outcomes for most flagged lesions plus a 5 % random audit. Shifts: ``centre`` (a new
centre on 20 % of lesions), ``age`` (+5 years, clipped at 85 as the data's ages are),
``colour`` (a cast on 30 % of crops), ``prevalence`` (doubled odds the model does not know)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from isicstack.serving.predlog import PredictionLog

CENTRES = ("A", "B", "C", "D", "E")
FILLERS = 12  # extra numeric inputs, half patient-level: a family of tests as large as real


def simulate(rng: np.random.Generator, n: int, per_patient: float, shift: str = "",
             start: int = 0) -> dict[str, np.ndarray]:
    """``n`` lesions of patients with ~``per_patient`` lesions each (lognormal sizes)."""
    sizes = np.maximum(1, rng.lognormal(np.log(per_patient) - 0.3, 0.8, n).astype(int))
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    sizes[-1] -= sizes.sum() - n
    P = sizes.size
    pid = np.repeat(np.arange(P), sizes)
    age = np.clip(np.round(rng.normal(58, 13, P) / 5) * 5, 15, 85)
    if shift == "age":
        age = np.minimum(age + 5, 85)
    centre = np.array(CENTRES)[rng.choice(5, P, p=[0.3, 0.25, 0.2, 0.15, 0.1])].astype(object)
    if shift == "centre":
        new = rng.permutation(P)
        take = new[: np.searchsorted(np.cumsum(sizes[new]), 0.2 * n) + 1]
        centre[take] = "Z"
    skin = rng.normal(0, 1, P)
    c = {"patient_id": np.array([f"P{start}_{i}" for i in pid]),
         "age_approx": age[pid], "sex": np.where(rng.random(P) < 0.6, "male", "female")[pid],
         "attribution": centre[pid],
         "tbp_tile_type": np.where(rng.random(P) < 0.3, "3D: white", "3D: XP")[pid]}
    size_z = 0.5 * rng.normal(0, 1, P)[pid] + rng.normal(0, 1, n)
    c["clin_size_long_diam_mm"] = np.exp(1.2 + 0.4 * size_z)
    c["tbp_lv_H"] = 60 + 5 * skin[pid] + 3 * rng.normal(0, 1, n)
    for j in range(FILLERS):
        c[f"f{j}"] = (rng.normal(0, 1, P)[pid] if j % 2 else 0) + rng.normal(0, 1, n)
    missing = rng.random(n) < 0.02
    c["clin_size_long_diam_mm"][missing] = np.nan
    logit = -4.2 + 0.9 * size_z + 0.03 * (c["age_approx"] - 58) + 0.7 * rng.normal(0, 1, n)
    truth = logit + (np.log(2.0) if shift == "prevalence" else 0.0)
    c["label"] = (rng.random(n) < 1 / (1 + np.exp(-truth))).astype(int)
    c["score"] = 1 / (1 + np.exp(-logit))
    c["crop_width"] = rng.normal(130, 8, n)
    c["crop_height"] = rng.normal(130, 8, n)
    base = 150 + 12 * skin[pid] + 6 * rng.normal(0, 1, n)
    c["mean_r"], c["mean_g"], c["mean_b"] = base + 25, base - 5, base - 20
    if shift == "colour":
        cast = rng.random(n) < 0.3
        c["mean_r"] = c["mean_r"] + 18 * cast
        c["mean_b"] = c["mean_b"] - 12 * cast
    c["brightness"] = 0.299 * c["mean_r"] + 0.587 * c["mean_g"] + 0.114 * c["mean_b"]
    return c


NUMERIC = ("age_approx", "clin_size_long_diam_mm", "tbp_lv_H", *(f"f{j}" for j in range(FILLERS)))
CATEGORICAL = ("sex", "attribution", "tbp_tile_type")
CROPS = {"width": "crop_width", "height": "crop_height", "brightness": "brightness",
         "mean_r": "mean_r", "mean_g": "mean_g", "mean_b": "mean_b"}


def numeric_stat(x: np.ndarray, rng: np.random.Generator) -> dict:
    """The shared design's numeric statistic (deciles, shares, missing, range, a sample)."""
    ok = x[np.isfinite(x)]
    edges = np.unique(np.quantile(ok, np.linspace(0, 1, 11)))
    counts = np.histogram(ok, edges)[0]
    return {"edges": edges.tolist(), "fractions": (counts / counts.sum()).tolist(),
            "missing": float(1 - ok.size / x.size), "min": float(ok.min()),
            "max": float(ok.max()), "sample": rng.choice(ok, min(2000, ok.size), False).tolist()}


def reference(train: dict[str, np.ndarray], threshold: float, seed: int = 0) -> dict:
    """reference.json (format 1) of a simulated training set."""
    rng = np.random.default_rng(seed)
    n = train["score"].size
    cats = {}
    for k in CATEGORICAL:
        levels, counts = np.unique(train[k].astype(str), return_counts=True)
        cats[k] = {"fractions": dict(zip(levels.tolist(), (counts / n).tolist(), strict=True)),
                   "missing": 0.0}
    return {"format": 1, "rows": n,
            "numeric": {k: numeric_stat(train[k], rng) for k in NUMERIC},
            "categorical": cats,
            "crops": {k: numeric_stat(train[v], rng) for k, v in CROPS.items()},
            "scores": {"full": numeric_stat(train["score"], rng)},
            "review": {"full": {"threshold": threshold,
                                "rate": float((train["score"] >= threshold).mean()), "n": n}}}


def make_bundle(folder: Path, seed: int = 0, rows: int = 20000) -> tuple[Path, float]:
    """A bundle folder with reference.json and bundle.json; its operating threshold."""
    train = simulate(np.random.default_rng(seed), rows, 5)
    pos = np.sort(train["score"][train["label"] == 1])
    threshold = float(pos[int(0.2 * pos.size)])  # 80 % sensitivity
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reference.json").write_text(json.dumps(reference(train, threshold, seed)))
    (folder / "bundle.json").write_text(json.dumps({"format": 1, "version": "sim-1"}))
    return folder, threshold


def write_log(path: Path, windows: list[dict[str, np.ndarray]], threshold: float,
              seed: int = 1, biopsy: float = 0.9, audit: float = 0.05,
              skip: frozenset[str] = frozenset()) -> PredictionLog:
    """Every window's lesions as prediction rows (one hour apart per window) and outcomes for
    ``biopsy`` of the flagged and an ``audit`` share of all lesions."""
    rng = np.random.default_rng(seed)
    plog = PredictionLog(path, b"test-key")
    for w, c in enumerate(windows):
        n = c["score"].size
        flag = c["score"] >= threshold
        inputs = [k for k in (*NUMERIC, *CATEGORICAL) if k not in skip]
        rows = [{"ts": 1e9 + 3600 * w + i * 0.1, "request_id": f"r{w}", "lesion_id": f"L{w}_{i}",
                 "patient_id": str(c["patient_id"][i]), "model_version": "sim-1",
                 "scorer": "full", "model": "sim", "score": float(c["score"][i]),
                 "risk": float(c["score"][i]), "flag": bool(flag[i]),
                 "inputs": {k: getattr(c[k][i], "item", lambda v=c[k][i]: v)() for k in inputs},
                 "crop_stats": {k: float(c[v][i]) for k, v in CROPS.items()}}
                for i in range(n)]
        plog.record(rows)
        audited = rng.random(n) < audit
        biopsied = flag & (rng.random(n) < biopsy)
        con = plog._con()
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO outcomes (ts, lesion_id, label, reason) VALUES (?, ?, ?, ?)",
            [(1e9 + 3600 * w + 1000, f"L{w}_{i}", int(c["label"][i]),
              "audit" if audited[i] else "biopsy")
             for i in range(n) if audited[i] or biopsied[i]])
        con.execute("COMMIT")
    return plog


def to_frame(c: dict[str, np.ndarray], threshold: float, seed: int = 1, biopsy: float = 0.9,
             audit: float = 0.05) -> pl.DataFrame:
    """One window as ``monitoring.run.load_log`` returns it, without the SQLite round trip
    (the many simulated windows of the alarm tests)."""
    rng = np.random.default_rng(seed)
    n = c["score"].size
    flag = c["score"] >= threshold
    audited = rng.random(n) < audit
    verified = audited | (flag & (rng.random(n) < biopsy))
    return pl.DataFrame({
        "ts": np.arange(n, dtype=np.float64), "patient_hash": c["patient_id"].astype(str),
        "scorer": ["full"] * n, "score": c["score"], "risk": c["score"],
        "flag": flag.astype(np.int64),
        **{k: c[k] for k in (*NUMERIC, *CROPS.values())},
        **{k: c[k].astype(str) for k in CATEGORICAL},
        "label": pl.Series(np.where(verified, c["label"], 0)).cast(pl.Float64).to_numpy(),
        "reason": pl.Series(np.where(audited, "audit", np.where(verified, "biopsy", "")))}
    ).with_columns(pl.when(pl.Series(verified)).then(pl.col("label")).otherwise(None)
                   .alias("label"))
