"""Report: reads only artifacts, writes PNGs, report.md linking them and report.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isicstack.calibration.config import OperatingPointConfig
from isicstack.data.io import DataError
from isicstack.data.metric import pauc
from isicstack.evaluation.config import DriftConfig, ReportConfig
from isicstack.evaluation.report import run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK = {"drift": DriftConfig(num_rounds=30)}  # a small drift model: the report is under test


@pytest.fixture()
def art(mini_artifacts: Path, tmp_path: Path) -> Path:
    """Folds plus two OOF files (one informative, one weak) and one made for other folds."""
    out = tmp_path / "art"
    (out / "oof").mkdir(parents=True)
    for name in ("folds.parquet", "folds.json"):  # folds.json: the data the folds came from
        shutil.copy(mini_artifacts / name, out / name)
    folds = pl.read_parquet(out / "folds.parquet")
    rng = np.random.default_rng(0)
    y = folds["target"].to_numpy()
    for name, signal in (("good", 2.0), ("weak", 0.3)):
        pred = 1 / (1 + np.exp(-(signal * y + rng.normal(size=len(y)) - 3)))
        folds.select("isic_id", "fold").with_columns(pred=pred).write_parquet(
            out / "oof" / f"{name}.parquet")
    folds.select("isic_id").with_columns(fold=pl.lit(0, pl.Int16), pred=pl.lit(0.5)).write_parquet(
        out / "oof" / "stale.parquet")
    return out


def test_report_writes_png_md_json(art: Path):
    info = run(ReportConfig(artifacts=str(art), **QUICK))
    rep = art / "report"
    for name in ("cv.png", "roc.png", "scores.png"):
        assert (rep / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in (rep / "report.md").read_text()
    md = (rep / "report.md").read_text()
    assert "| good |" in md and "| weak |" in md and "\n`stale` left out: " in md  # and why
    saved = json.loads((rep / "report.json").read_text())
    assert set(saved["models"]) == {"good", "weak"} and "stale" in saved["left_out"]
    folds = pl.read_parquet(art / "folds.parquet")
    good = pl.read_parquet(art / "oof" / "good.parquet")
    assert saved["models"]["good"]["oof_pauc"] == pytest.approx(
        pauc(folds["target"].to_numpy(), good["pred"].to_numpy()))
    assert info["models"]["good"]["oof_pauc"] > info["models"]["weak"]["oof_pauc"]


def test_report_named_model_must_match_folds(art: Path, tmp_path: Path):
    with pytest.raises(DataError, match="stale.parquet"):
        run(ReportConfig(artifacts=str(art), models=["good", "stale"], out=str(tmp_path / "r")))
    assert not (tmp_path / "r" / "report.md").exists()


def test_report_without_models(mini_artifacts: Path, tmp_path: Path):
    shutil.copy(mini_artifacts / "folds.parquet", tmp_path / "folds.parquet")
    info = run(ReportConfig(artifacts=str(tmp_path), drift=DriftConfig(enabled=False)))
    text = (tmp_path / "report" / "report.md").read_text()
    assert info["models"] == {} and "No OOF predictions" in text
    # a section that shows nothing says so the one way, disabled or not applicable alike
    assert info["drift"] == {"skipped": "disabled (drift.enabled=false)"}
    assert info["operating_points"] == {"skipped": "no OOF predictions"}
    assert "Skipped: disabled (drift.enabled=false)" in text
    assert "Skipped: no OOF predictions" in text


def test_report_operating_points(art: Path):
    info = run(ReportConfig(artifacts=str(art), operating_point=OperatingPointConfig(
        target_tpr=0.9, n_boot=50), **QUICK))
    good = info["operating_points"]["good"]
    assert good["target_tpr"] == 0.9 and good["point"]["recall"] >= 0.9
    assert good["patients"] == pl.read_parquet(art / "folds.parquet")["patient_id"].n_unique()
    assert good["point"]["review_per_1000"] < info["operating_points"]["weak"]["point"][
        "review_per_1000"]
    md = (art / "report" / "report.md").read_text()
    assert "Operating point at sensitivity ≥ 0.90" in md and "review / 1,000" in md
    saved = json.loads((art / "report" / "report.json").read_text())
    assert saved["operating_points"]["weak"]["ci_low"]["recall"] <= 0.9 + 1e-9


def test_report_oracle_rank_correlations(art: Path, mini_isic: Path):
    """A model planted on logit_image correlates with that part; the report says so."""
    folds = pl.read_parquet(art / "folds.parquet")
    oracle = folds.select("isic_id").join(pl.read_parquet(mini_isic / "oracle.parquet"),
                                          on="isic_id", how="left", maintain_order="left")
    folds.select("isic_id", "fold").with_columns(pred=oracle["logit_image"]).write_parquet(
        art / "oof" / "imagey.parquet")
    info = run(ReportConfig(artifacts=str(art), data_dir=str(mini_isic),
                            models=["good", "imagey"], **QUICK))
    corr = info["oracle_corr"]["spearman"]
    assert set(corr["imagey"]) >= {"logit_image", "logit_table", "logit_patient", "logit_shared"}
    assert corr["imagey"]["logit_image"] == pytest.approx(1.0)
    assert abs(corr["imagey"]["logit_table"]) < 0.2 and abs(corr["good"]["logit_image"]) < 0.2
    md = (art / "report" / "report.md").read_text()
    assert "What each model learned" in md and "| imagey | " in md
    saved = json.loads((art / "report" / "report.json").read_text())
    assert saved["oracle_corr"]["spearman"]["imagey"]["logit_image"] == pytest.approx(1.0)


def test_report_oracle_of_other_data_is_named(art: Path, tmp_path: Path):
    pl.DataFrame({"isic_id": ["ISIC_x"], "logit_image": [0.0]}).write_parquet(
        tmp_path / "oracle.parquet")
    info = run(ReportConfig(artifacts=str(art), data_dir=str(tmp_path), models=["good"]))
    assert "oracle.parquet" in info["oracle_corr"]["skipped"]
    run(ReportConfig(artifacts=str(art), data_dir=str(tmp_path / "none"), models=["good"]))
    text = (art / "report" / "report.md").read_text()  # real data: no oracle, said the one way
    assert "Skipped: no oracle.parquet beside the data" in text


def test_report_drift_section_on_the_folds_data(art: Path, mini_isic: Path):
    """``data_dir=auto`` finds the data the folds were made from (folds.json)."""
    info = run(ReportConfig(artifacts=str(art), models=["good"],
                            drift=DriftConfig(num_rounds=30, auc_warn=0.0)))
    assert info["drift"]["source"] == str(mini_isic) and info["drift"]["warning"]
    md = (art / "report" / "report.md").read_text()
    assert "Drift check" in md and "**Warning**" in md and "| tbp_lv_" in md
    assert "What each model learned" in md  # the oracle of the same data


# the stack's metrics.json as `isic stack` wrote it before the one result shape (trimmed)
STACK_BEFORE = {
    "best_of_methods": {"fold_auc": {"0": 0.83, "1": 0.84}, "fold_pauc": {"0": 0.12, "1": 0.11},
                        "fold_pauc_mean": 0.115, "fold_pauc_std": 0.005, "method": "rank_mean",
                        "note": "optimistic: the method was chosen on these OOF scores",
                        "oof_auc": 0.84, "oof_pauc": 0.1234},
    "chosen": "rank_mean",
    "cv": {"inner_pauc": {"0": {"rank_mean": 0.1}, "1": {"rank_mean": 0.1}}, "kind": "nested",
           "picks": {"0": "rank_mean", "1": "logistic"}, "scale": "per outer fold, ..."},
    "input_names": ["good", "weak"], "inputs": {}, "method": "auto", "methods": {},
    "n_folds": 2, "oracle": None, "positives": 83, "rows": 3000, "seconds": 3.672,
    "stack": {"fold_auc": {"0": 0.82, "1": 0.85}, "fold_pauc": {"0": 0.1, "1": 0.12},
              "fold_pauc_mean": 0.11, "fold_pauc_std": 0.01, "oof_auc": 0.83, "oof_pauc": 0.105},
    "weights": [0.5, 0.5]}


@pytest.mark.parametrize("shape", ["before", "now"])
def test_report_flags_tuned_runs_and_the_nested_stack(art: Path, shape: str):
    """A run whose config merged tuned parameters chosen on these folds is marked optimistic;
    the stack's note says its CV row is nested and shows the best-of figure apart, read from
    the stack's result in either shape."""
    from isicstack.data.provenance import fold_hash, write_provenance
    from isicstack.ledger.result import FoldScore, RunResult

    folds = pl.read_parquet(art / "folds.parquet")
    by = {"study": "s1", "trial": 7, "value": 0.15, "finished_trials": 30,
          "profile": "smoke", "fold_hash": fold_hash(folds)}
    write_provenance(art / "runs" / "good", {}, tuned={"file": "tabular.yaml", "sha256": "x",
                                                       "tuned_by": by})
    write_provenance(art / "runs" / "weak", {}, tuned={"file": "tabular.yaml", "sha256": "x",
                                                       "tuned_by": {**by, "fold_hash": "other"}})
    (art / "runs" / "stack").mkdir(parents=True)
    used = {"stack", "rows", "positives", "seconds", "n_folds"}
    doc = STACK_BEFORE if shape == "before" else RunResult(
        "stack", "stack", 0.105, 0.83, 3000, 83,
        {0: FoldScore(0.1, 0.82), 1: FoldScore(0.12, 0.85)}, 3.672, "abc",
        {k: v for k, v in STACK_BEFORE.items() if k not in used}).to_dict()
    (art / "runs" / "stack" / "metrics.json").write_text(json.dumps(doc))
    info = run(ReportConfig(artifacts=str(art), **QUICK))
    md = (art / "report" / "report.md").read_text()
    assert "| good † |" in md and "| weak † |" in md
    assert info["tuned"]["good"]["same_folds"] is True
    assert info["tuned"]["weak"]["same_folds"] is False
    assert "study `s1`, trial 7 of 30, chosen on these same folds, so its CV is optimistic" in md
    assert "`weak`: tuned parameters from study `s1`, trial 7 of 30, chosen on other folds" in md
    assert "Its CV row is nested" in md and "fold 1: logistic" in md and "0.1234" in md


def test_every_section_says_nothing_here_one_way():
    """A section with nothing to show is ``{"skipped": reason}``, whichever it is, and reads
    the same in report.md: its title, then ``Skipped: <reason>``."""
    from isicstack.data.sections import skipped
    from isicstack.evaluation import calibration_report, clinical, drift, oracle, subgroup_tables
    from isicstack.explain import report_section as gradcam

    sec = skipped("nothing to read", path="x")
    rendered = {"drift": drift.markdown(sec), "oracle": oracle.markdown(sec),
                "calibration": calibration_report.markdown(sec),
                "subgroups": subgroup_tables.markdown(sec), "gradcam": gradcam.markdown(sec),
                "loco": clinical.markdown({"loco": sec})}
    for name, lines in rendered.items():
        assert len(lines) == 2 and lines[0].startswith("\n## "), (name, lines)
        assert lines[1] == "Skipped: nothing to read", (name, lines)
    assert len({lines[0] for lines in rendered.values()}) == len(rendered)  # each its own title
