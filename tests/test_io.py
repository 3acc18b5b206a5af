"""Metadata loading: the real Kaggle files load; every kind of bad input is a clear error."""

from pathlib import Path

import polars as pl
import pytest

from isicstack.data.io import DataError, atomic_path, load_metadata, write_csv
from isicstack.data.schema import TEST_COLUMNS, TRAIN_COLUMNS, TRAIN_ONLY, columns_for


def test_schema_counts():
    assert len(TRAIN_COLUMNS) == 55
    assert len(TEST_COLUMNS) == 44
    assert set(TRAIN_ONLY) == {"target", "lesion_id", "iddx_full", "iddx_1", "iddx_2", "iddx_3",
                               "iddx_4", "iddx_5", "mel_mitotic_index", "mel_thick_mm",
                               "tbp_lv_dnn_lesion_confidence"}
    with pytest.raises(ValueError, match="split"):
        columns_for("valid")  # type: ignore[arg-type]


def test_headers_match_schema(kaggle_fixtures: Path):
    train_header = (kaggle_fixtures / "train-metadata-first100.csv").open().readline().strip()
    test_header = (kaggle_fixtures / "test-metadata.csv").open().readline().strip()
    assert tuple(train_header.split(",")) == TRAIN_COLUMNS
    assert tuple(test_header.split(",")) == TEST_COLUMNS


def test_load_kaggle_files(kaggle_fixtures: Path, kaggle_is_real: bool):
    test = load_metadata(kaggle_fixtures / "test-metadata.csv", "test")
    assert test.shape == (3, 44)
    assert test["age_approx"].dtype == pl.Float64
    train = load_metadata(kaggle_fixtures / "train-metadata-first100.csv", "train")
    assert train.shape == (100, 55)
    assert train.columns == list(TRAIN_COLUMNS)
    assert train["target"].is_in([0, 1]).all()
    if kaggle_is_real:  # known values of the real rows
        assert train["target"].sum() == 0
        assert train["patient_id"].n_unique() == 89
    # a test file is not a valid train file
    with pytest.raises(DataError, match="target"):
        load_metadata(kaggle_fixtures / "test-metadata.csv", "train")


def test_v1_test_file_warns(kaggle_fixtures: Path, caplog):
    """The first release's tbp_lv_stdLExt bug (a copy of tbp_lv_Lext) is detected and named."""
    with caplog.at_level("WARNING"):
        load_metadata(kaggle_fixtures / "test-metadata.csv", "test")
    assert "stdLExt" not in caplog.text
    with caplog.at_level("WARNING"):
        df = load_metadata(kaggle_fixtures / "test-metadata-v1.csv", "test")
    assert df.height == 3
    assert "test-metadata-v1.csv" in caplog.text and "tbp_lv_stdLExt" in caplog.text


@pytest.fixture()
def good_csv(kaggle_fixtures: Path, tmp_path: Path) -> Path:
    path = tmp_path / "train-metadata.csv"
    path.write_bytes((kaggle_fixtures / "train-metadata-first100.csv").read_bytes())
    return path


def _rewrite(path: Path, fn) -> Path:
    df = pl.read_csv(path, infer_schema=False)
    write_csv(fn(df), path)
    return path


def test_missing_column_named(good_csv: Path):
    _rewrite(good_csv, lambda d: d.drop("tbp_lv_areaMM2"))
    with pytest.raises(DataError, match=r"train-metadata.csv.*tbp_lv_areaMM2"):
        load_metadata(good_csv, "train")


def test_unparseable_value_named(good_csv: Path):
    _rewrite(good_csv, lambda d: d.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("abc")).otherwise(pl.col("tbp_lv_x"))
        .alias("tbp_lv_x")))
    with pytest.raises(DataError, match=r"train-metadata.csv.*'tbp_lv_x' row 7.*'abc'"):
        load_metadata(good_csv, "train")


def test_duplicate_id_named(good_csv: Path):
    first = pl.read_csv(good_csv, infer_schema=False)["isic_id"][0]
    _rewrite(good_csv, lambda d: pl.concat([d, d.head(1)]))
    with pytest.raises(DataError, match=rf"isic_id.*{first}"):
        load_metadata(good_csv, "train")


def test_bad_target(good_csv: Path):
    _rewrite(good_csv, lambda d: d.with_columns(target=pl.lit("2")))
    with pytest.raises(DataError, match="target"):
        load_metadata(good_csv, "train")


def test_empty_files(tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_metadata(empty, "test")
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(TEST_COLUMNS) + "\n")
    with pytest.raises(DataError, match="no rows"):
        load_metadata(header_only, "test")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_metadata(tmp_path / "nope.csv", "test")


def test_extra_columns_kept_and_reported_once(good_csv: Path, caplog):
    _rewrite(good_csv, lambda d: d.with_columns(my_note=pl.lit("x"), other=pl.lit("y")))
    with caplog.at_level("WARNING"):
        df = load_metadata(good_csv, "train")
    assert df.columns[-2:] == ["my_note", "other"]
    warnings = [r for r in caplog.records if "unknown column" in r.getMessage()]
    assert len(warnings) == 1 and "my_note" in warnings[0].getMessage()


def test_na_age_is_missing(good_csv: Path):
    _rewrite(good_csv, lambda d: d.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("NA")).otherwise(pl.col("age_approx"))
        .alias("age_approx")))
    df = load_metadata(good_csv, "train")
    assert df["age_approx"][0] is None


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_auto_data_dir_lives_outside_the_code(tmp_path: Path, monkeypatch, caplog):
    """data_dir=auto: the real files in datasets/ (their former place data/raw/ still read, with
    a warning), else the profile's synthetic set in datasets/synthetic/ (never in the package)."""
    from isicstack.data.layout import TRAIN_META, resolve_data_dir

    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("auto", "smoke") == Path("datasets/synthetic/smoke")
    assert resolve_data_dir("x/y", "smoke") == Path("x/y")
    old = tmp_path / "data/raw/isic-2024-challenge"
    old.mkdir(parents=True)
    (old / TRAIN_META).write_text("isic_id\n")
    assert resolve_data_dir("auto") == Path("data/raw/isic-2024-challenge")
    assert "former place" in caplog.text
    new = tmp_path / "datasets/isic-2024-challenge"
    new.mkdir(parents=True)
    (new / TRAIN_META).write_text("isic_id\n")
    assert resolve_data_dir("auto") == Path("datasets/isic-2024-challenge")
