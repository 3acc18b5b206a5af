"""Feature groups on the Kaggle fixture rows (synthetic, and real when present): shapes,
formulas, leakage guards, oof."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isicstack.data import layout
from isicstack.data.io import load_metadata, write_parquet
from isicstack.data.schema import TEST_COLUMNS, TRAIN_ONLY
from isicstack.features.build import GROUPS, build_features
from isicstack.features.config import FeatureConfig
from isicstack.features.lesion import EPS, LESION_FEATURES, RAW_FEATURES

ROWWISE = ["raw", "lesion", "patient", "ugly_duckling", "categorical"]
LGBM_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@pytest.fixture(scope="module")
def train(kaggle_fixtures: Path) -> pl.DataFrame:
    return load_metadata(kaggle_fixtures / "train-metadata-first100.csv", "train")


@pytest.fixture(scope="module")
def test(kaggle_fixtures: Path) -> pl.DataFrame:
    return load_metadata(kaggle_fixtures / "test-metadata.csv", "test")


@pytest.fixture(scope="module")
def grouped(train: pl.DataFrame) -> pl.DataFrame:
    """The 100 rows spread over 4 patients, so within-patient statistics are non-trivial."""
    return train.with_columns(patient_id=pl.format("IP_{}", pl.int_range(pl.len()) % 4))


def _write_oof(art: Path, name: str, train: pl.DataFrame, test: pl.DataFrame) -> None:
    """OOF + test scores of stage ``name`` and the folds.parquet they were made on."""
    n = train.height
    write_parquet(train.select("isic_id", "patient_id").with_columns(
        target=pl.lit(0, pl.Int8), fold=pl.Series(np.arange(n) % 5)), layout.folds_path(art))
    write_parquet(pl.DataFrame({"isic_id": train["isic_id"], "fold": np.arange(n) % 5,
                                "pred": np.linspace(0.01, 0.99, n)}), layout.oof_path(art, name))
    write_parquet(pl.DataFrame({"isic_id": test["isic_id"], "pred": [0.2, 0.4, 0.6]}),
                  layout.test_pred_path(art, name))


def _check(fs, n_train: int, n_test: int | None) -> None:
    assert fs.train.height == n_train
    assert fs.train.columns == ["isic_id", *fs.names]
    if n_test is not None:
        assert fs.test.height == n_test and fs.test.columns == fs.train.columns
    for df in (fs.train, fs.test) if n_test is not None else (fs.train,):
        num = df.select(fs.numeric)
        assert all(dt == pl.Float32 for dt in num.dtypes)
        assert all(df.schema[c] == pl.Int32 for c in fs.categorical)
        if fs.numeric:  # no NaN and no inf: missing is null
            assert not any(num.select(pl.all().is_nan().any() | pl.all().is_infinite().any())
                           .row(0))


@pytest.mark.parametrize("group", ROWWISE)
def test_each_group_on_kaggle_fixtures(group, train, test):
    fs = build_features(train, test, FeatureConfig(groups=[group]))
    _check(fs, train.height, test.height)
    assert fs.names
    assert fs.train["isic_id"].to_list() == train["isic_id"].to_list()


def test_group_feature_counts(train):
    counts = {g: len(build_features(train, None, FeatureConfig(groups=[g])).names)
              for g in ROWWISE}
    n = len(RAW_FEATURES) + len(LESION_FEATURES)
    assert counts == {"raw": 34, "lesion": len(LESION_FEATURES), "patient": 34 * 4 + 4,
                      "ugly_duckling": 12, "categorical": 7}
    fs = build_features(train, None, FeatureConfig())
    assert len(fs.numeric) == n + n * 4 + 4 + 12


def test_every_group_on_the_44_column_test_file(test, tmp_path):
    """The test file alone (as both splits) feeds every group: no train-only column is read."""
    assert tuple(test.columns) == TEST_COLUMNS
    _write_oof(tmp_path, "cnn", test, test)
    cfg = FeatureConfig(groups=[*ROWWISE, "oof"], oof_names=["cnn"], oof_rank=True)
    fs = build_features(test, test, cfg, artifacts=tmp_path)
    _check(fs, 3, 3)


def test_train_only_columns_do_not_matter(train, test):
    cfg = FeatureConfig()
    full = build_features(train, test, cfg)
    narrow = build_features(train.drop(TRAIN_ONLY), test, cfg)
    assert full.train.equals(narrow.train) and full.test.equals(narrow.test)
    # scrambling every train-only column (target included) changes nothing either
    scrambled = train.with_columns(pl.col(c).shuffle(seed=1) for c in TRAIN_ONLY)
    assert build_features(scrambled, test, cfg).train.equals(full.train)


def test_hand_computed_formulas(test, kaggle_is_real):
    row = build_features(test, None, FeatureConfig(groups=["lesion"])).train.row(0, named=True)
    r = test.row(0, named=True)
    A, B, H, Hext, L, Lext = (r[f"tbp_lv_{c}"] for c in ("A", "B", "H", "Hext", "L", "Lext"))
    Aext, Bext = r["tbp_lv_Aext"], r["tbp_lv_Bext"]
    area, perim, minor = r["tbp_lv_areaMM2"], r["tbp_lv_perimeterMM"], r["tbp_lv_minorAxisMM"]
    diam, age, x, z = r["clin_size_long_diam_mm"], r["age_approx"], r["tbp_lv_x"], r["tbp_lv_z"]
    nb, nc = r["tbp_lv_norm_border"], r["tbp_lv_norm_color"]
    if kaggle_is_real:  # first real test row, ISIC_0015657, typed in from the file
        assert (A, Lext, area, perim, minor, diam, x, z, nb, nc) == (
            22.80433, 31.1146, 3.846876, 9.387248, 2.187644, 2.7, -155.0651, 113.9801,
            5.435366, 1.143374)
    expected = {
        "lesion_size_ratio": minor / (diam + EPS),
        "lesion_shape_index": area / (perim**2 + EPS),
        "hue_contrast": abs(H - Hext),
        "color_range": abs(L - Lext) + abs(A - Aext) + abs(B - Bext),
        "border_length_ratio": perim / (2 * math.pi * math.sqrt(area / math.pi) + EPS),
        "log_lesion_area": math.log(area + 1),
        "lab_chroma": math.hypot(A, B),
        "lab_hue_angle": math.atan2(B, A),
        "position_angle_xz": math.atan2(z, x),
        "size_age_interaction": diam * age,
        "border_color_harmonic": nb * nc / (nb + nc + EPS),
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-5), name


def test_zero_denominators_give_no_inf(test):
    zeros = test.with_columns(pl.lit(0.0).alias(c) for c in RAW_FEATURES)
    fs = build_features(zeros, None, FeatureConfig(groups=["raw", "lesion", "patient"]))
    _check(fs, 3, None)


def test_patient_zscore_rank_and_counts(grouped):
    cfg = FeatureConfig(groups=["raw", "patient"])
    df = build_features(grouped, None, cfg).train.with_columns(pid=grouped["patient_id"])
    by = df.group_by("pid").agg(
        pl.col("tbp_lv_areaMM2_pz").mean().alias("zmean"),
        pl.col("tbp_lv_areaMM2_pz").std().alias("zstd"),
        pl.col("tbp_lv_areaMM2_prank").max().alias("rmax"),
        pl.col("tbp_lv_areaMM2_prank").min().alias("rmin"),
        pl.col("patient_lesion_count").first().alias("n"),
        pl.col("patient_total_area").first().alias("area"),
        pl.col("tbp_lv_areaMM2").sum().alias("area_sum"),
        pl.len(),
    )
    assert by["zmean"].abs().max() < 1e-5
    assert by["zstd"].to_numpy() == pytest.approx(1.0, abs=1e-4)
    assert (by["rmax"] == 1.0).all() and (by["rmin"] > 0).all()
    assert (by["n"] == by["len"].cast(pl.Float32)).all()
    assert by["area"].to_numpy() == pytest.approx(by["area_sum"].to_numpy(), rel=1e-5)
    assert (df["age_since_first_visit"] >= 0).all()


def test_patient_stats_per_split(grouped, test):
    """Test-side statistics come from test rows only: the same as building test on its own."""
    cfg = FeatureConfig(groups=["raw", "lesion", "patient", "ugly_duckling"])
    with_train = build_features(grouped, test, cfg).test
    alone = build_features(test, None, cfg).train
    assert with_train.equals(alone)


def test_ugly_duckling_matches_numpy(grouped):
    cfg = FeatureConfig(groups=["raw", "patient", "ugly_duckling"], patient_contexts=["patient"])
    df = build_features(grouped, None, cfg).train
    z = np.abs(df.select(f"{c}_pz" for c in RAW_FEATURES).to_numpy().astype(np.float64))
    assert df["ud_pz_count_absz_gt2"].to_numpy() == pytest.approx(np.nansum(z > 2, axis=1))
    assert df["ud_pz_max_absz"].to_numpy() == pytest.approx(np.nanmax(z, axis=1), rel=1e-6)
    assert df["ud_pz_mean_absz"].to_numpy() == pytest.approx(np.nanmean(z, axis=1), rel=1e-5)
    assert df["ud_pz_std_absz"].to_numpy() == pytest.approx(np.nanstd(z, axis=1), abs=1e-4)


def test_unseen_and_missing_categories_are_null(train, test, kaggle_is_real):
    if kaggle_is_real:  # "FNQH Cairns" is a real test-only hospital, absent from the train rows
        assert test["attribution"][2] == "FNQH Cairns"
    else:
        test = test.with_columns(attribution=pl.Series(["a", "b", "Hospital never seen"]))
    # row 0: a site x location cross that the train rows hold (it must get that level's code)
    seen = train.drop_nulls(["anatom_site_general", "tbp_lv_location"]).row(0, named=True)
    t = test.with_columns(sex=pl.Series([None, "female", "male"], dtype=pl.String),
                          anatom_site_general=pl.Series([seen["anatom_site_general"],
                                                         *test["anatom_site_general"][1:]]),
                          tbp_lv_location=pl.Series([seen["tbp_lv_location"],
                                                     *test["tbp_lv_location"][1:]]))
    fs = build_features(train, t, FeatureConfig(groups=["categorical"]))
    unseen = t["attribution"][2]
    assert unseen not in train["attribution"].to_list()
    assert unseen not in fs.categories["attribution"]
    assert fs.test["attribution"].to_list()[2] is None
    assert fs.test["sex"].to_list()[0] is None
    codes = dict(zip(fs.categories["sex"], range(9), strict=False))
    assert fs.test["sex"].to_list()[1:] == [codes["female"], codes["male"]]
    sites = fs.categories["combined_anatomical_site"]
    site = f"{seen['anatom_site_general']}_{seen['tbp_lv_location']}"
    assert site in sites and fs.test["combined_anatomical_site"][0] == sites.index(site)
    if kaggle_is_real:
        assert "posterior torso_Torso Back Top Third" in fs.categories["combined_anatomical_site"]
        assert fs.test["combined_anatomical_site"].null_count() == 0


def test_names_valid_unique_and_deterministic(train, test):
    a = build_features(train, test, FeatureConfig())
    b = build_features(train, test, FeatureConfig())
    assert all(LGBM_NAME.match(n) for n in a.names)
    assert len(set(a.names)) == len(a.names)
    assert a.train.equals(b.train) and a.test.equals(b.test)


def test_row_order_follows_input(grouped):
    cfg = FeatureConfig()
    fs = build_features(grouped, None, cfg)
    perm = np.random.default_rng(0).permutation(grouped.height)
    shuffled = build_features(grouped[perm], None, cfg)
    assert shuffled.train.equals(fs.train[perm])


def test_config_errors():
    with pytest.raises(ValueError, match="known: raw, lesion"):
        FeatureConfig(groups=["raw", "leison"])
    with pytest.raises(ValueError, match="patient_site"):
        FeatureConfig(patient_contexts=["patient_hospital"])
    with pytest.raises(ValueError, match="oof_names"):
        FeatureConfig(groups=["oof"])
    assert set(ROWWISE) | {"oof"} == set(GROUPS)


def test_missing_input_column_is_named(test):
    with pytest.raises(ValueError, match="tbp_lv_H"):
        build_features(test.drop("tbp_lv_H"), None, FeatureConfig(groups=["raw"]))


def test_oof_features(grouped, test, tmp_path):
    _write_oof(tmp_path, "eff-b0", grouped, test)
    cfg = FeatureConfig(groups=["oof"], oof_names=["eff-b0"], oof_rank=True)
    fs = build_features(grouped, test, cfg, artifacts=tmp_path)
    assert fs.numeric == ["eff_b0_oof", "eff_b0_oof_pnorm", "eff_b0_oof_rank"]
    pred = np.linspace(0.01, 0.99, grouped.height)
    assert fs.train["eff_b0_oof"].to_numpy() == pytest.approx(pred, rel=1e-6)
    pmean = pl.DataFrame({"p": pred, "pid": grouped["patient_id"]}).select(
        pl.col("p") / pl.col("p").mean().over("pid"))["p"].to_numpy()
    assert fs.train["eff_b0_oof_pnorm"].to_numpy() == pytest.approx(pmean, rel=1e-4)
    # three test rows of three patients: each is its own patient mean
    assert fs.test["eff_b0_oof_pnorm"].to_numpy() == pytest.approx(1.0, rel=1e-4)
    assert fs.test["eff_b0_oof_rank"].to_list() == [1.0, 1.0, 1.0]


def test_oof_noise_is_seeded_and_train_only(grouped, test, tmp_path):
    _write_oof(tmp_path, "cnn", grouped, test)
    clean = build_features(grouped, test, FeatureConfig(groups=["oof"], oof_names=["cnn"]),
                           artifacts=tmp_path)
    cfg = FeatureConfig(groups=["oof"], oof_names=["cnn"], oof_noise_sd=0.1, seed=3)
    a = build_features(grouped, test, cfg, artifacts=tmp_path)
    b = build_features(grouped, test, cfg, artifacts=tmp_path)
    assert a.train.equals(b.train)
    diff = (a.train["cnn_oof"] - clean.train["cnn_oof"]).to_numpy()
    assert 0.05 < diff.std() < 0.15
    assert a.test.equals(clean.test)
    assert a.train["cnn_oof_pnorm"].equals(clean.train["cnn_oof_pnorm"])


def test_oof_missing_file_and_missing_id(grouped, test, tmp_path):
    cfg = FeatureConfig(groups=["oof"], oof_names=["cnn"])
    with pytest.raises(FileNotFoundError, match=r"oof[/\\]cnn\.parquet.*run the 'cnn' stage"):
        build_features(grouped, test, cfg, artifacts=tmp_path)
    _write_oof(tmp_path, "cnn", grouped, test)
    short = pl.read_parquet(layout.oof_path(tmp_path, "cnn"))[1:]
    write_parquet(short, layout.oof_path(tmp_path, "cnn"))
    lost = grouped["isic_id"][0]
    with pytest.raises(ValueError, match=f"1 of {grouped.height}.*{lost}"):
        build_features(grouped, test, cfg, artifacts=tmp_path)
    (tmp_path / "test" / "cnn.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"test[/\\]cnn\.parquet"):
        build_features(grouped.filter(pl.col("isic_id") != lost), test, cfg, artifacts=tmp_path)


def test_oof_features_made_on_other_folds_are_refused(grouped, test, tmp_path):
    """An OOF score used as a feature must come from the folds in use (content-checked)."""
    from isicstack.data.io import DataError
    from isicstack.data.provenance import fold_hash
    from isicstack.evaluation.evaluate import reused_oof_features

    _write_oof(tmp_path, "cnn", grouped, test)
    cfg = FeatureConfig(oof_names=["cnn"])  # naming scores to read implies the 'oof' group
    fs = build_features(grouped, test, cfg, artifacts=tmp_path)
    folds = pl.read_parquet(layout.folds_path(tmp_path))
    assert "oof" in cfg.groups and fs.oof_folds == fold_hash(folds)
    reused_oof_features(fs.oof_folds, folds, 0, ["cnn"])  # the same folds: fine
    moved = folds.with_columns((pl.col("fold") + 1) % 5)
    with pytest.raises(DataError, match="fold seed 3 gives other folds"):
        reused_oof_features(fs.oof_folds, moved, 3, ["cnn"])
    write_parquet(moved, layout.folds_path(tmp_path))  # folds redone, scores not
    with pytest.raises(DataError, match=r"cnn\.parquet: made on other folds"):
        build_features(grouped, test, cfg, artifacts=tmp_path)
