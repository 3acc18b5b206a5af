"""submission.csv: validated completely before writing; a failed check leaves no file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isicstack.data.io import DataError
from isicstack.stacking.submission import write_submission


@pytest.fixture()
def case(mini_isic: Path) -> tuple[pl.DataFrame, Path, Path]:
    """Valid predictions for the mini test set, shuffled, plus its metadata and sample files."""
    meta = mini_isic / "test-metadata.csv"
    ids = pl.read_csv(meta, infer_schema=False)["isic_id"]
    preds = pl.DataFrame({"isic_id": ids, "pred": np.linspace(0, 1, ids.len())})
    shuffled = preds.sample(fraction=1.0, shuffle=True, seed=0)
    return shuffled, meta, mini_isic / "sample_submission.csv"


def test_valid_submission_in_test_order(case, tmp_path: Path):
    preds, meta, sample = case
    out = write_submission(preds, meta, sample, tmp_path / "sub" / "submission.csv")
    sub = pl.read_csv(out)
    ids = pl.read_csv(meta, infer_schema=False)["isic_id"]
    assert sub.columns == ["isic_id", "target"] and sub["isic_id"].equals(ids)
    np.testing.assert_allclose(sub["target"].to_numpy(), np.linspace(0, 1, ids.len()))
    assert [p.name for p in out.parent.iterdir()] == ["submission.csv"]  # no temp file left


def _nan(p: pl.DataFrame) -> pl.DataFrame:
    return p.with_columns(pred=pl.when(pl.int_range(pl.len()) == 3).then(float("nan"))
                          .otherwise(pl.col("pred")))


BAD = {
    "missing id": (lambda p: p.slice(1), "no prediction"),
    "duplicate id": (lambda p: pl.concat([p, p.head(1)]), "duplicated"),
    "unknown id": (lambda p: pl.concat([p, pl.DataFrame({"isic_id": ["ISIC_X"], "pred": [0.5]})]),
                   "not in the test metadata"),
    "NaN": (_nan, "non-finite"),
    "null": (lambda p: p.with_columns(pred=pl.when(pl.int_range(pl.len()) == 2).then(None)
                                      .otherwise(pl.col("pred"))), "non-finite"),
    "above 1": (lambda p: p.with_columns(pred=pl.col("pred") * 1.5), "outside"),
    "negative": (lambda p: p.with_columns(pred=pl.col("pred") - 0.1), "outside"),
    "wrong columns": (lambda p: p.rename({"pred": "score"}), "score column"),
}


@pytest.mark.parametrize("problem", sorted(BAD))
def test_bad_predictions_raise_and_write_nothing(problem: str, case, tmp_path: Path):
    preds, meta, sample = case
    damage, message = BAD[problem]
    with pytest.raises(DataError, match=message) as err:
        write_submission(damage(preds), meta, sample, tmp_path / "submission.csv")
    assert list(tmp_path.iterdir()) == []
    if problem != "wrong columns":
        assert "ISIC_" in str(err.value)  # names an example id


def test_wrong_sample_header_raises(case, tmp_path: Path):
    preds, meta, _ = case
    sample = tmp_path / "sample.csv"
    sample.write_text("isic_id,prediction\nISIC_1,0.3\n")
    out = tmp_path / "out" / "submission.csv"
    with pytest.raises(DataError, match="header"):
        write_submission(preds, meta, sample, out)
    assert not out.exists()


def test_existing_file_untouched_on_failure(case, tmp_path: Path):
    preds, meta, sample = case
    out = tmp_path / "submission.csv"
    out.write_text("previous\n")
    with pytest.raises(DataError):
        write_submission(preds.slice(2), meta, sample, out)
    assert out.read_text() == "previous\n"


def test_official_three_row_files(kaggle_fixtures: Path, tmp_path: Path):
    ids = pl.read_csv(kaggle_fixtures / "test-metadata.csv", infer_schema=False)["isic_id"]
    preds = pl.DataFrame({"isic_id": ids.reverse(), "target": [0.9, 0.2, 0.0]})
    out = write_submission(preds, kaggle_fixtures / "test-metadata.csv",
                           kaggle_fixtures / "sample_submission.csv", tmp_path / "s.csv")
    assert out.read_text().splitlines()[0] == "isic_id,target"
    assert pl.read_csv(out)["isic_id"].equals(ids)
