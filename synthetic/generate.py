"""Synthetic ISIC 2024 data in the exact Kaggle layout, with a known generative story.

No machine here reaches Kaggle, so every stage runs on data this module writes: 55-column
``train-metadata.csv``, 44-column ``test-metadata.csv``, HDF5 JPEG crops, ``sample_submission.csv``
and ``oracle.parquet`` (the true probability and its parts, which the pipeline never reads).

Generative story:
1. Patients (lesion counts lognormal, sigma ~1, >= 1 each) get an age, sex, hospital (which fixes
   licence and mostly the tile lighting), a skin tone and random effects on their lesions' size,
   darkness, hue, border and nevus-likeness: each patient has a "baseline" lesion.
2. Lesions = patient baseline + within-patient deviations ``e_size, e_dark, e_hue``; every table
   column is derived from these consistently (Lab/LCh, deltas, ellipse area/perimeter, x/y/z by
   location), with correlations and missingness imitating the real data.
3. logit = intercept (bisection: mean prob = prevalence) + ``logit_table`` (non-linear function of
   table columns: size, nevi_confidence, age, deltaB, contrast, stdLExt, size x border)
   + ``logit_patient`` ("ugly duckling": e_size and |e_dark|, |e_hue| relative to the same patient)
   + ``logit_image`` (latent ``u``, drawn only as blue-white veil in the crop)
   + ``logit_shared`` (latent ``s``: strong variegated blotches in the crop, weakly in norm_color).
4. target ~ Bernoulli(sigmoid(logit)); diagnosis columns follow the target and the features.
So a GBDT on raw columns, patient-normalised features, a CNN and their fusion each gain.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import polars as pl

from isicstack.data import layout
from isicstack.data.crops import write_crops
from isicstack.data.io import write_csv, write_parquet
from isicstack.synthetic.config import SynthConfig
from isicstack.synthetic.kaggle_tables import kaggle_frame
from isicstack.synthetic.levels import (
    BENIGN_DETAIL,
    FAMILY,
    HOSPITALS,
    LOCATIONS,
    MALIGNANT,
    MITOTIC,
)
from isicstack.synthetic.render import encode_images, image_params

log = logging.getLogger(__name__)


def _allocate(rng: np.random.Generator, rows: int, patients: int) -> np.ndarray:
    """Lesions per patient: heavy-tailed (lognormal, sigma 0.97), >= 1 each, summing to rows."""
    patients = max(1, min(patients, rows))
    w = rng.lognormal(0.0, 0.97, patients)
    extra = rng.multinomial(rows - patients, w / w.sum())
    return 1 + extra


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _intercept(logit: np.ndarray, prevalence: float) -> float:
    """Bisection: the shift making the mean probability equal ``prevalence``."""
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _sigmoid(logit + mid).mean() < prevalence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _lesions(rng: np.random.Generator, counts: np.ndarray) -> tuple[dict, dict]:
    """All table columns (numpy) and latents for patients with ``counts`` lesions each."""
    nP, n = len(counts), int(counts.sum())
    pid = np.repeat(np.arange(nP), counts)
    N = lambda sd=1.0, size=n: rng.normal(0.0, sd, size)  # noqa: E731
    # patient level
    age_p = np.clip(np.round(rng.normal(58, 13, nP) / 5) * 5, 15, 85)
    hosp = rng.choice(len(HOSPITALS), nP, p=_norm([h[0] for h in HOSPITALS.values()]))
    white_p = rng.random(nP) < np.array([h[2] for h in HOSPITALS.values()])[hosp]
    male = rng.random(nP) < 0.66
    size_p, dark_p, hue_p, hueb_p = N(0.4, nP), N(0.3, nP), N(1, nP), N(1, nP)
    border_p, nevi_p, sdlx_p = N(1, nP), N(3, nP), N(0.25, nP)
    skin_p = np.stack([rng.normal(52, 9, nP), rng.normal(15.5, 3, nP), rng.normal(26.4, 3.5, nP)])
    loc_logw = np.log(_norm([v[0] for v in LOCATIONS.values()])) + N(0.5, (nP, len(LOCATIONS)))
    cum = np.cumsum(_norm(np.exp(loc_logw), axis=1), axis=1)
    # lesion level
    e_size, e_dark, e_hue, s, u = N(), N(), N(), N(), N()
    loc = np.minimum((rng.random(n)[:, None] > cum[pid]).sum(1), len(LOCATIONS) - 1)
    xyz = np.array([v[1:] for v in LOCATIONS.values()])[loc]
    c: dict[str, np.ndarray] = {"pid": pid, "loc": loc}
    for k, ax in enumerate("xyz"):
        c[f"tbp_lv_{ax}"] = xyz[:, 2 * k] + xyz[:, 2 * k + 1] * N()
    visit = (rng.random(nP) < 0.12)[pid] & (rng.random(n) < 0.4)
    c["age_approx"] = np.minimum(age_p[pid] + 5 * visit, 85.0)
    c["male"], c["white"], c["hosp"] = male[pid], white_p[pid] ^ (rng.random(n) < 0.03), hosp[pid]
    log_d = math.log(3.3) + size_p[pid] + 0.30 * e_size + N(0.05)
    d = np.clip(np.exp(log_d), 1.0, 28.0)
    zd = (log_d - math.log(3.3)) / 0.52
    c["clin_size_long_diam_mm"] = np.round(d, 2)
    zk = (dark_p[pid] + 0.24 * e_dark + 0.12 * zd * 0.38) / 0.39  # contrast (darkness) z
    dL = -np.exp(math.log(8.5) + 0.38 * zk)
    b = 0.35 * border_p[pid] + 0.25 * zd - 0.45 * zk + 0.78 * N()  # border irregularity z
    q = np.clip(rng.normal(0.68, 0.13, n) - 0.04 * b, 0.22, 0.995)
    minor = d * q * np.exp(N(0.03))
    c["tbp_lv_minorAxisMM"] = minor
    c["tbp_lv_eccentricity"] = np.clip(np.sqrt(1 - q**2) + N(0.02), 0.05, 0.995)
    area = math.pi / 4 * d * minor * np.exp(N(0.1))
    ha, hb = d / 2, minor / 2
    ell_perim = math.pi * (3 * (ha + hb) - np.sqrt((3 * ha + hb) * (ha + 3 * hb)))
    perim = ell_perim * (1 + 0.125 * np.exp(0.55 * (0.7 * b + 0.3 * zd + 0.65 * N())))
    c["tbp_lv_areaMM2"], c["tbp_lv_perimeterMM"] = area, perim
    c["tbp_lv_area_perim_ratio"] = perim**2 / area
    c["tbp_lv_norm_border"] = np.clip(3.05 * np.exp(0.42 * b), 0.7, 10.0)
    c["tbp_lv_symm_2axis"] = np.clip(0.286 * np.exp(0.4 * (0.9 * b + 0.44 * N())), 0.05, 0.8)
    c["tbp_lv_symm_2axis_angle"] = 5.0 * rng.integers(0, 36, n)
    ext = skin_p[:, pid] + np.stack([N(4), N(2), N(2.5)])
    dA = 5.0 + 1.1 * zk + 1.8 * hue_p[pid] + 1.5 * e_hue + N(0.6)
    dB = 0.9 + 1.8 * hueb_p[pid] - 0.5 * zd + 1.5 * N()
    for name, e, dlt in (("L", ext[0], dL), ("A", ext[1], dA), ("B", ext[2], dB)):
        c[f"tbp_lv_{name}ext"], c[f"tbp_lv_{name}"] = np.round(e, 6), np.round(e + dlt, 6)
        c[f"tbp_lv_delta{name}"] = c[f"tbp_lv_{name}"] - c[f"tbp_lv_{name}ext"]
    for sfx in ("", "ext"):
        A, B = c[f"tbp_lv_A{sfx}"], c[f"tbp_lv_B{sfx}"]
        c[f"tbp_lv_C{sfx}"], c[f"tbp_lv_H{sfx}"] = np.hypot(A, B), np.degrees(np.arctan2(B, A))
    c["tbp_lv_deltaLB"] = np.hypot(dL, dB) * (1 + np.abs(N(0.02)))
    c["tbp_lv_deltaLBnorm"] = c["tbp_lv_deltaLB"] * np.clip(0.79 * np.exp(N(0.15)), 0.54, 1.6)
    c["tbp_lv_stdL"] = 0.29 * np.abs(dL) * np.exp(N(0.3))
    c["tbp_lv_stdLExt"] = 2.25 * np.exp(sdlx_p[pid] + N(0.2))
    v = 0.55 * zd + 0.35 * zk + 0.5 * s + 0.55 * N()  # colour variegation z
    on = v > -1.25
    csm = np.where(on, 1.1 * np.exp(0.55 * v), 0.0)
    c["tbp_lv_color_std_mean"] = csm
    c["tbp_lv_norm_color"] = np.where(on, np.clip(2.9 * np.exp(0.5 * v + N(0.08)), 0, 10), 0.0)
    c["tbp_lv_radial_color_std_max"] = np.where(on & (N() > -2.4), 0.95 * csm * np.exp(N(0.15)), 0)
    eta = -3.2 + nevi_p[pid] + 2.0 * zk - 2.5 * b + 5.0 * N()
    c["tbp_lv_nevi_confidence"] = 100 * _sigmoid(eta)
    c["tbp_lv_dnn_lesion_confidence"] = 100 * _sigmoid(rng.normal(7, 3.5, n))
    lat = {"e_size": e_size, "e_dark": e_dark, "e_hue": e_hue, "s": s, "u": u, "v": v,
           "zd": zd, "zk": zk, "b": b, "eta": eta}
    return c, lat


def _norm(w: np.ndarray | list[float], axis: int | None = None) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w / w.sum(axis=axis, keepdims=axis is not None)


def _logits(c: dict, lat: dict) -> dict[str, np.ndarray]:
    """The four additive parts of the true logit (before the intercept)."""
    zd, b = lat["zd"], lat["b"]
    table = (0.75 * zd + 0.45 * np.maximum(zd - 1, 0) + 0.35 * np.maximum(zd, 0) * np.maximum(b, 0)
             - 0.09 * (lat["eta"] + 3.2) + 0.03 * (np.nan_to_num(c["age_approx"], nan=58) - 58)
             - 0.35 * (c["tbp_lv_deltaB"] - 0.9) / 2.8
             + 0.5 * np.maximum((c["tbp_lv_deltaLBnorm"] - 9) / 3, 0)
             + 0.3 * np.log(c["tbp_lv_stdLExt"] / 2.25) / 0.32)
    patient = (0.9 * lat["e_size"] + 1.0 * (np.abs(lat["e_dark"]) - 0.8)
               + 0.5 * (np.abs(lat["e_hue"]) - 0.8))
    return {"logit_table": table, "logit_patient": patient, "logit_image": 1.3 * lat["u"],
            "logit_shared": 1.0 * lat["s"]}


def _diagnosis(rng: np.random.Generator, c: dict, lat: dict, y: np.ndarray) -> dict:
    """lesion_id, iddx_*, mel_* columns consistent with the target and the lesion's look."""
    n = len(y)
    age_z = (np.nan_to_num(c["age_approx"], nan=58) - 58) / 13
    score = np.stack([0.8 * (c["tbp_lv_deltaA"] - 5) / 3 - 0.6 * lat["zk"] + 0.4 * age_z,
                      0.5 * age_z - 0.7 + 0.3 * (c["tbp_lv_deltaB"] - 0.9) / 2.8,
                      0.8 * lat["zk"] + 0.6 * lat["v"] + 0.2])
    fam = (np.cumsum(_norm(np.exp(score), axis=0), 0) < rng.random(n)).sum(0).clip(0, 2)
    full = np.full(n, "Benign", dtype=object)
    thick, mitotic = np.full(n, np.nan), np.full(n, None, dtype=object)
    for f, fname in enumerate(("bcc", "scc", "mel")):
        rows = np.flatnonzero((y == 1) & (fam == f))
        opts = [m for m in MALIGNANT if m[1] == fname]
        pick = rng.choice(len(opts), len(rows), p=_norm([m[2] for m in opts]))
        full[rows] = [f"Malignant::{FAMILY[fname]}::{opts[i][0]}" for i in pick]
        inv = rows[np.array([fname == "mel" and "Invasive" in opts[i][0] for i in pick],
                            dtype=bool)]
        thick[inv] = np.round(np.clip(rng.lognormal(np.log(0.5), 0.7, len(inv)), 0.1, 8), 1)
        mit = inv[rng.random(len(inv)) < 0.83]
        mitotic[mit] = rng.choice(MITOTIC, len(mit), p=_norm([16, 15, 2, 2, 1, 1, 3]))
    detail = (y == 0) & (rng.random(n) < 0.003)
    full[detail] = rng.choice(BENIGN_DETAIL, int(detail.sum()))
    has_id = (y == 1) | detail | (rng.random(n) < 0.045)
    return {"lesion_id": np.where(has_id, _ids(rng, "IL", n), None), "iddx_full": full,
            "mel_mitotic_index": mitotic, "mel_thick_mm": thick}


def _ids(rng: np.random.Generator, prefix: str, n: int, sort: bool = False) -> np.ndarray:
    """``n`` unique ids like ``ISIC_0015670`` (sorted on request, as in the Kaggle files)."""
    num = rng.choice(10_000_000, n, replace=False)
    if sort:
        num = np.sort(num)
    return np.char.add(f"{prefix}_", np.char.zfill(num.astype(str), 7)).astype(object)


def simulate(cfg: SynthConfig) -> tuple[dict, np.ndarray, dict]:
    """Columns, split mask (True = train) and latents of all rows, in file order (no I/O)."""
    rng = np.random.default_rng([cfg.seed, 1])
    n_test_p = int(np.clip(round(cfg.patients * cfg.test_rows / max(cfg.rows, 1)),
                           min(3, cfg.test_rows), cfg.test_rows))
    c_tr, c_te = _allocate(rng, cfg.rows, cfg.patients), _allocate(rng, cfg.test_rows, n_test_p)
    c, lat = _lesions(rng, np.concatenate([c_tr, c_te]))
    train = c["pid"] < len(c_tr)
    parts = _logits(c, lat)
    total = sum(parts.values())
    b0 = _intercept(total[train], cfg.prevalence)
    lat.update(parts, logit=total + b0, prob=_sigmoid(total + b0))
    c["target"] = (np.random.default_rng([cfg.seed, 3]).random(len(total)) < lat["prob"]).astype(
        np.int8)
    c.update(_diagnosis(rng, c, lat, c["target"]))
    # shuffle rows within each split; ids sorted in file order like the Kaggle files
    rid = np.random.default_rng([cfg.seed, 4])
    order = np.concatenate([rid.permutation(np.flatnonzero(train)),
                            rid.permutation(np.flatnonzero(~train))])
    c = {k: (v[order] if isinstance(v, np.ndarray) and len(v) == len(order) else v)
         for k, v in c.items()}
    lat = {k: v[order] for k, v in lat.items()}
    train = train[order]
    n_tr = int(train.sum())
    ids = _ids(rid, "ISIC", len(order))
    c["isic_id"] = np.concatenate([np.sort(ids[:n_tr]), np.sort(ids[n_tr:])])
    c["patient_id"] = _ids(rid, "IP", int(c["pid"].max()) + 1)[c["pid"]]
    return c, train, lat


def crop_params(cfg: SynthConfig, c: dict, lat: dict) -> np.ndarray:
    """Drawing parameters of every row's crop (train and test rows, in ``simulate`` order)."""
    return image_params(c, lat["s"], lat["u"], lat["v"], cfg.image_size,
                        np.random.default_rng([cfg.seed, 2]))


def generate(cfg: SynthConfig, images: bool = True) -> Path:
    """Write the whole data set into ``cfg.out`` (atomic files) and return that folder.

    ``images=False`` writes the tables only (the crops cost most of the time at full size),
    for metadata benchmarks; the tables are identical either way.
    """
    out = Path(cfg.out)
    c, train, lat = simulate(cfg)
    rng = np.random.default_rng([cfg.seed, 5])
    tr, te = np.flatnonzero(train), np.flatnonzero(~train)
    write_csv(kaggle_frame(c, tr, rng, "train"), out / layout.TRAIN_META)
    test = kaggle_frame(c, te, rng, "test")
    write_csv(test, out / layout.TEST_META)
    write_csv(test.select("isic_id", target=pl.lit(0.3)), out / layout.SAMPLE_SUBMISSION)
    oracle = pl.DataFrame({
        "isic_id": c["isic_id"], "split": np.where(train, "train", "test"),
        "target": c["target"], "prob": lat["prob"], "logit": lat["logit"],
        **{k: lat[k] for k in ("logit_table", "logit_patient", "logit_image", "logit_shared")},
    })
    write_parquet(oracle, out / layout.ORACLE)
    if not images:
        return out
    params = crop_params(cfg, c, lat)
    for code, (rows, name) in enumerate(((tr, layout.TRAIN_IMAGES), (te, layout.TEST_IMAGES))):
        items = encode_images(c["isic_id"][rows], params[rows], cfg.seed, code, cfg.workers,
                              cfg.jpeg_quality)
        write_crops(out / name, items)
    return out


def write_metadata_only(cfg: SynthConfig) -> Path:
    """The tables of ``generate`` without crops (metadata load benchmarks)."""
    return generate(cfg, images=False)


def run(cfg: SynthConfig) -> Path:
    """CLI entry point: generate and log what was written."""
    out = generate(cfg)
    oracle = pl.read_parquet(out / layout.ORACLE)
    for split in ("train", "test"):
        part = oracle.filter(pl.col("split") == split)
        log.info("%s: %d rows, %d positives (%.3f%%), %d crops of ~%d px", split, part.height,
                 part["target"].sum(), 100 * part["target"].mean(), part.height, cfg.image_size)
    for f in sorted(out.iterdir()):
        log.info("wrote %s (%.1f MB)", f, f.stat().st_size / 1e6)
    return out
