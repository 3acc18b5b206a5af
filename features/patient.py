"""Patient context: each lesion compared with the other lesions of the same patient.

A melanoma is the "ugly duckling" among a patient's moles, so the z-score of every numeric
within the patient (and within patient x body region) and its within-patient rank carried the
biggest gains after the base features. Everything here is a lazy window expression (``.over``)
evaluated per split: train statistics come from train rows and test statistics from test rows,
as in the competition (patients never cross splits). Window keys are precomputed as single
integer columns because one-column integer partitions are much cheaper than string tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from isicstack.features.lesion import EPS, finite

PATIENT = "patient_id"
_PID = "__key_patient"


@dataclass(frozen=True)
class Context:
    """A grouping for z-scores: the patient plus optional extra columns, and a name suffix."""

    extra: str | None
    suffix: str

    @property
    def key(self) -> str:
        return f"__key_{self.suffix}"


CONTEXTS: dict[str, Context] = {
    "patient": Context(None, "pz"),
    "patient_location": Context("tbp_lv_location", "plz"),
    "patient_location_simple": Context("tbp_lv_location_simple", "plsz"),
    "patient_site": Context("anatom_site_general", "psz"),
}
_SITE = CONTEXTS["patient_site"]

PATIENT_EXTRAS: tuple[str, ...] = (
    "patient_lesion_count", "patient_total_area", "patient_site_total_area",
    "age_since_first_visit",
)
UD_STATS: tuple[str, ...] = ("count_absz_gt2", "max_absz", "mean_absz", "std_absz")


def check_contexts(names: Sequence[str]) -> list[Context]:
    """Resolve context names, rejecting unknown or repeated ones with the known list."""
    unknown = [n for n in names if n not in CONTEXTS]
    if unknown:
        raise ValueError(
            f"unknown patient context(s) {unknown}; known: {', '.join(CONTEXTS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"patient_contexts has repeated entries: {list(names)}")
    return [CONTEXTS[n] for n in names]


def add_keys(lf: pl.LazyFrame, contexts: Sequence[Context]) -> pl.LazyFrame:
    """Add one UInt64 partition column per context (and the patient and site keys).

    A null location/site becomes its own level *within* the patient (code 0), so lesions of
    different patients are never pooled through a shared null.
    """
    pid = pl.col(PATIENT).rank("dense").cast(pl.UInt64)
    exprs = [pid.alias(_PID)]
    for ctx in dict.fromkeys([*contexts, _SITE]):
        if ctx.extra is None:
            continue
        code = pl.col(ctx.extra).rank("dense").fill_null(0).cast(pl.UInt64)
        exprs.append((pid * (1 << 32) + code).alias(ctx.key))
    return lf.with_columns(exprs)


def _key(ctx: Context) -> str:
    return _PID if ctx.extra is None else ctx.key


def zscore_exprs(cols: Sequence[str], contexts: Sequence[Context]) -> list[pl.Expr]:
    """``<col>_<suffix>`` = (x - group mean) / (group std + eps), Float32.

    Groups of one lesion have no std and give null, which the models treat as missing.
    """
    out = []
    for ctx in contexts:
        k = _key(ctx)
        for c in cols:
            x = pl.col(c)
            z = (x - x.mean().over(k)) / (x.std().over(k) + EPS)
            out.append(z.cast(pl.Float32).alias(f"{c}_{ctx.suffix}"))
    return out


def rank_exprs(cols: Sequence[str]) -> list[pl.Expr]:
    """``<col>_prank`` = within-patient percentile rank in (0, 1] (ties averaged), Float32."""
    return [
        (pl.col(c).rank("average").over(_PID) / pl.col(c).count().over(_PID))
        .cast(pl.Float32)
        .alias(f"{c}_prank")
        for c in cols
    ]


def extra_exprs() -> list[pl.Expr]:
    """Lesion count and total lesion area per patient and per (patient, site); visit offset."""
    area, age = pl.col("tbp_lv_areaMM2"), pl.col("age_approx")
    exprs = [
        pl.len().over(_PID).alias("patient_lesion_count"),
        area.sum().over(_PID).alias("patient_total_area"),
        area.sum().over(_SITE.key).alias("patient_site_total_area"),
        (age - age.min().over(_PID)).alias("age_since_first_visit"),
    ]
    return [e.cast(pl.Float32) for e in exprs]


def patient_names(cols: Sequence[str], contexts: Sequence[Context], rank: bool) -> list[str]:
    """Output names of :func:`zscore_exprs`, :func:`rank_exprs` and :func:`extra_exprs`."""
    names = [f"{c}_{ctx.suffix}" for ctx in contexts for c in cols]
    if rank:
        names += [f"{c}_prank" for c in cols]
    return names + list(PATIENT_EXTRAS)


def ugly_duckling_exprs(cols: Sequence[str], contexts: Sequence[Context]) -> list[pl.Expr]:
    """Per lesion and context: how many features are > 2 sd from the patient's other lesions,
    and the max, mean and (population) std of |z| across features.

    Reads the ``<col>_<suffix>`` z-score columns, which must already exist in the frame.
    """
    out = []
    for ctx in contexts:
        zs = [pl.col(f"{c}_{ctx.suffix}").abs() for c in cols]
        n = pl.sum_horizontal([z.is_not_null() for z in zs])
        s1 = pl.sum_horizontal(zs)
        s2 = pl.sum_horizontal([z * z for z in zs])
        mean = s1 / n
        std = (s2 / n - mean * mean).clip(lower_bound=0).sqrt()
        stats = {
            "count_absz_gt2": pl.sum_horizontal([z > 2 for z in zs]),
            "max_absz": pl.max_horizontal(zs),
            "mean_absz": mean,
            "std_absz": std,
        }
        out += [
            finite(e.cast(pl.Float32)).alias(f"ud_{ctx.suffix}_{name}")
            for name, e in stats.items()
        ]
    return out


def ugly_duckling_names(contexts: Sequence[Context]) -> list[str]:
    """Output names of :func:`ugly_duckling_exprs`."""
    return [f"ud_{ctx.suffix}_{s}" for ctx in contexts for s in UD_STATS]
