"""Per-lesion features: the raw measurements and the top solutions' ratios and interactions.

Every feature is a polars expression over one row's test-file columns, so the same code serves
train and test and can be fused into one lazy pass. Formulas follow the ISIC 2024 field notes
(``../shared/docs/isic2024-field-notes.md``, "Derived"); divisions add ``EPS`` so zero
denominators give large finite values instead of inf, and any non-finite result becomes null.
"""

from __future__ import annotations

import math

import polars as pl

from isicstack.data.schema import NUMERIC_FEATURES

EPS = 1e-5

RAW_FEATURES: tuple[str, ...] = NUMERIC_FEATURES


def finite(expr: pl.Expr) -> pl.Expr:
    """``expr`` with inf and NaN replaced by null (GBDTs treat null as missing, inf as a value)."""
    return pl.when(expr.is_finite()).then(expr)


def _c(name: str) -> pl.Expr:
    """Shorthand for a ``tbp_lv_`` measurement column."""
    return pl.col(f"tbp_lv_{name}")


def _div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return num / (den + EPS)


def _harmonic(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """a*b/(a+b): small when either term is small, unlike the plain product."""
    return _div(a * b, a + b)


def lesion_exprs() -> dict[str, pl.Expr]:
    """Name -> expression of every derived lesion feature (Float64, before the finite guard)."""
    age = pl.col("age_approx")
    diam = pl.col("clin_size_long_diam_mm")
    area, perim = _c("areaMM2"), _c("perimeterMM")
    nb, nc, symm = _c("norm_border"), _c("norm_color"), _c("symm_2axis")
    ecc, csm = _c("eccentricity"), _c("color_std_mean")
    dA, dB, dL, dLBn = _c("deltaA"), _c("deltaB"), _c("deltaL"), _c("deltaLBnorm")
    H, Hext, L, Lext = _c("H"), _c("Hext"), _c("L"), _c("Lext")
    A, Aext, B, Bext = _c("A"), _c("Aext"), _c("B"), _c("Bext")
    x, y, z = _c("x"), _c("y"), _c("z")
    stdL = _c("stdL")

    delta_sq = dA**2 + dB**2 + dL**2
    dist3d = (x**2 + y**2 + z**2).sqrt()
    shape_index = _div(area, perim**2)
    border_complexity = nb + symm

    return {
        # size / shape
        "lesion_size_ratio": _div(_c("minorAxisMM"), diam),
        "lesion_shape_index": shape_index,
        "perimeter_to_area_ratio": _div(perim, area),
        "area_to_perimeter_ratio": _div(area, perim),
        "border_length_ratio": _div(perim, 2 * math.pi * (area / math.pi).sqrt()),
        "log_lesion_area": (area + 1).log(),
        "normalized_lesion_size": _div(diam, age),
        "border_complexity": border_complexity,
        "shape_complexity_index": border_complexity + shape_index,
        # colour contrast, lesion vs surrounding skin
        "hue_contrast": (H - Hext).abs(),
        "luminance_contrast": (L - Lext).abs(),
        "color_range": (L - Lext).abs() + (A - Aext).abs() + (B - Bext).abs(),
        "lesion_color_difference": delta_sq.sqrt(),
        "std_dev_contrast": (delta_sq / 3).sqrt(),
        "mean_color_contrast": (dA + dB + dL) / 3,
        "color_contrast_index": dA + dB + dL + dLBn,
        "mean_hue_difference": (H + Hext) / 2,
        "lesion_visibility_score": dLBn + nc,
        # Lab chroma and hue angle of the lesion and of the skin around it
        "lab_chroma": (A**2 + B**2).sqrt(),
        "lab_chroma_ext": (Aext**2 + Bext**2).sqrt(),
        "lab_hue_angle": pl.arctan2(B, A),
        # colour uniformity
        "color_uniformity": _div(csm, _c("radial_color_std_max")),
        "color_variance_ratio": _div(csm, _c("stdLExt")),
        "color_consistency": _div(stdL, Lext),
        "consistency_color": _harmonic(stdL, Lext),
        "hue_color_std_interaction": H * csm,
        "shape_color_consistency": ecc * csm,
        "color_asymmetry_index": _c("radial_color_std_max") * symm,
        # border x colour x symmetry
        "border_color_interaction": nb * nc,
        "border_color_harmonic": _harmonic(nb, nc),
        "symmetry_border_consistency": symm * nb,
        "consistency_symmetry_border": _harmonic(symm, nb),
        "lesion_severity_index": (nb + nc + ecc) / 3,
        "comprehensive_lesion_index": (_c("area_perim_ratio") + ecc + nc + symm) / 4,
        "color_shape_composite_index": (csm + _c("area_perim_ratio") + symm) / 3,
        "symmetry_perimeter_interaction": symm * perim,
        # position on the 3-D body model
        "position_distance_3d": dist3d,
        "position_angle_xy": pl.arctan2(y, x),
        "position_angle_xz": pl.arctan2(z, x),
        "volume_approximation_3d": area * dist3d,
        # age / size
        "size_age_interaction": diam * age,
        # kernels call the next two "age_normalized_nevi_confidence_2" / "index_age_size_symmetry"
        "age_size_hypot": (diam**2 + age**2).sqrt(),
        "age_normalized_nevi_confidence": _div(_c("nevi_confidence"), age),
        "size_color_contrast_ratio": _div(diam, dLBn),
        "age_size_symmetry_index": age * diam * symm,
        "age_area_symmetry_index": age * area * symm,
    }


LESION_FEATURES: tuple[str, ...] = tuple(lesion_exprs())


def base_frame(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Add the raw numerics (cast to Float64, finite-guarded) and the derived features to ``lf``.

    Both groups are always computed, whichever are emitted, because the patient and
    ugly-duckling groups z-score them; the derived step is a separate ``with_columns`` so it
    reads the guarded Float64 raw columns.
    """
    raw = [finite(pl.col(c).cast(pl.Float64, strict=False)).alias(c) for c in RAW_FEATURES]
    return lf.with_columns(raw).with_columns(
        finite(e).alias(n) for n, e in lesion_exprs().items()
    )
