"""Subgroup tables, leave-one-centre-out CV and the report's clinical sections, on the session's
synthetic mini data (and on ../shared/real-dev when present)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isicstack.data.metric import pauc
from isicstack.evaluation.config import SubgroupConfig
from isicstack.evaluation.subgroup_tables import (
    MISSING,
    age_labels,
    fmt,
    markdown,
    subgroup_tables,
)


def test_age_bands():
    got = age_labels(np.array([5, 30, 44, 45, 74.5, 75, 90, np.nan]), [30, 45, 60, 75])
    assert got.tolist() == ["<30", "30-44", "30-44", "45-59", "60-74", "75+", "75+", MISSING]


def test_cells_count_and_refuse_small_ones():
    rng = np.random.default_rng(0)
    n = 6000
    y = (rng.random(n) < 0.05).astype(int)
    pred = y * 1.5 + rng.normal(size=n)
    patients = np.arange(n) // 20
    site = np.where(np.arange(n) < 5800, "torso", "palm")
    dx = np.where(y == 1, np.where(rng.random(n) < 0.7, "melanoma", "BCC"), MISSING)
    cfg = SubgroupConfig(min_positives=20, n_boot=100, diagnosis_columns=["dx"])
    tab = subgroup_tables({"site": site, "dx": dx}, y, pred, patients, cfg)
    torso, palm = tab["columns"]["site"]["cells"]
    assert (torso["group"], torso["rows"], palm["rows"]) == ("torso", 5800, 200)
    assert torso["positives"] + palm["positives"] == y.sum()
    assert torso["pauc_ci"][0] < torso["pauc"] < torso["pauc_ci"][1]
    assert "pauc" not in palm and "sensitivity" not in palm and "specificity" in palm
    assert palm["notes"] == [f"too few positives ({palm['positives']} < 20)"]
    mel = next(c for c in tab["columns"]["dx"]["cells"] if c["group"] == "melanoma")
    assert mel["rows"] == mel["positives"] == int(((dx == "melanoma") & (y == 1)).sum())
    assert "specificity" not in mel and mel["notes"][-1].startswith("against all")
    assert tab["all"]["sensitivity"] >= 0.8  # the threshold is the overall operating point
    text = "\n".join(markdown({"config": cfg.__dict__, "models": {"m": tab}}))
    assert "| palm | 200 |" in text and "too few positives" in text and "(diagnosis)" in text


@pytest.fixture(scope="module")
def art(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folds, a LightGBM run, its calibration, and a 'perfect' OOF (the oracle's risk)."""
    from isicstack.evaluation.calibrate import run as calibrate
    from isicstack.evaluation.config import CalibrateConfig
    from isicstack.tabular.config import ModelSpec, TabularConfig
    from isicstack.tabular.cv import run as train_tabular

    art = tmp_path_factory.mktemp("clinical") / "artifacts"
    art.mkdir()
    for name in ("folds.parquet", "folds.json"):
        shutil.copy2(mini_artifacts / name, art / name)
    train_tabular(TabularConfig(data_dir=str(mini_isic), artifacts=str(art), bags=1, threads=1,
                                models={"lgbm": ModelSpec("lgbm", num_rounds=20,
                                                          params={"min_data_in_leaf": 5})}))
    calibrate(CalibrateConfig(artifacts=str(art), data_dir=str(mini_isic), n_boot=20))
    return art


def test_subgroups_command(art: Path, mini_isic: Path):
    from isicstack.evaluation.config import SubgroupsConfig
    from isicstack.evaluation.subgroups import run
    from isicstack.settings.layers import load_config

    cfg = load_config(SubgroupsConfig, "subgroups", "smoke",
                      [f"artifacts={art}", f"data_dir={mini_isic}", "cells.min_positives=5"])
    sec = run(cfg)
    assert list(sec["models"]) == ["lgbm"]  # no stack here: every model
    cols = sec["models"]["lgbm"]["columns"]
    assert list(cols) == ["anatom_site_general", "sex", "age_band", "attribution",
                          "tbp_tile_type", "iddx_3"]
    folds = pl.read_parquet(art / "folds.parquet")
    for spec in cols.values():
        if spec["mode"] == "cell":
            assert sum(c["rows"] for c in spec["cells"]) == folds.height
    text = (art / "subgroups" / "subgroups.md").read_text()
    assert "## Subgroups" in text and "| **attribution** |" in text


def test_loco_and_report_sections(art: Path, mini_isic: Path, tmp_path: Path):
    from isicstack.evaluation.config import LocoConfig, ReportConfig
    from isicstack.evaluation.loco import run as loco
    from isicstack.evaluation.report import run as report
    from isicstack.settings.layers import load_config

    res = loco(load_config(LocoConfig, "loco", "smoke", [
        f"artifacts={art}", f"data_dir={mini_isic}", "models=[lgbm]", "min_positives=3",
        "tabular_overrides=[threads=1,models.xgb.enabled=false,models.lgbm.num_rounds=20]"]))
    meta = pl.read_csv(mini_isic / "train-metadata.csv", columns=["attribution"])
    groups = res["models"]["lgbm"]["groups"]
    assert len(groups) == meta["attribution"].n_unique()
    assert sum(g["loco"]["rows"] for g in groups) == meta.height
    assert all("cv" in g for g in groups) and "cv_pauc" in res["models"]["lgbm"]["pooled"]
    # mini_isic's largest centre has 20 positives (>= min_positives=3: both figures are there),
    # its smallest fewer (a dash and a note); each figure is its parquet's pAUC on those rows
    big, small = groups[0], groups[-1]
    assert big["loco"]["positives"] >= 3 and small["loco"]["positives"] < 3
    assert "pauc" not in small["loco"] and small["loco"]["notes"]
    rows = pl.read_csv(mini_isic / "train-metadata.csv", columns=["isic_id", "attribution",
                                                                   "target"])
    for side, path in (("cv", art / "oof" / "lgbm.parquet"),
                       ("loco", art / "loco" / "attribution" / "lgbm.parquet")):
        scored = rows.join(pl.read_parquet(path).select("isic_id", "pred"), on="isic_id")
        assert scored.height == meta.height, side
        assert res["models"]["lgbm"]["pooled"][f"{side}_pauc"] == pytest.approx(
            pauc(scored["target"], scored["pred"]), abs=1e-9), side
        mine = scored.filter(pl.col("attribution") == big["group"])
        assert big[side]["pauc"] == pytest.approx(pauc(mine["target"], mine["pred"]),
                                                  abs=1e-9), side
    out = tmp_path / "report"
    report(load_config(ReportConfig, "report", "default", [
        f"artifacts={art}", f"data_dir={mini_isic}", f"out={out}", "drift.enabled=false",
        "gradcam.enabled=false", "operating_point.n_boot=20", "clinical.calibration_n_boot=20",
        "clinical.subgroups.n_boot=20", "clinical.subgroups.min_positives=5"]))
    text = (out / "report.md").read_text()
    for part in ("## Calibration", "Oracle (the generator's true probability)",
                 "## Subgroups", "## Leave-one-`attribution`-out CV", "reliability.png",
                 f"| {big['group']} | {big['loco']['rows']:,} | {big['loco']['patients']:,} | "
                 f"{big['loco']['positives']:,} | {fmt(big['loco'], 'pauc')} | "
                 f"{fmt(big['cv'], 'pauc')} |"):
        assert part in text, part
    assert (out / "reliability.png").stat().st_size > 1000
    info = json.loads((out / "report.json").read_text())
    assert info["clinical"]["calibration"]["models"]["lgbm"]["fold_pauc_max_shift"] == 0.0


def test_loco_refuses_oof_features(art: Path, mini_isic: Path):
    from isicstack.evaluation.config import LocoConfig
    from isicstack.evaluation.loco import tabular_config

    with pytest.raises(ValueError, match="leak the held-out centre"):
        tabular_config(LocoConfig(artifacts=str(art), data_dir=str(mini_isic),
                                  tabular_overrides=["features.oof_names=[lgbm]"]))


@pytest.mark.slow
def test_real_dev_tables_render(real_dev: Path, tmp_path: Path):
    """Subgroup and per-centre tables on the real rows (skips without ../shared/real-dev)."""
    from isicstack.data.config import FoldsConfig
    from isicstack.data.folds import ensure_folds
    from isicstack.evaluation.config import LocoConfig, SubgroupsConfig
    from isicstack.evaluation.loco import markdown as loco_md
    from isicstack.evaluation.loco import read_sections
    from isicstack.evaluation.loco import run as loco
    from isicstack.evaluation.subgroups import run as subgroups
    from isicstack.settings.layers import load_config
    from isicstack.tabular.config import TabularConfig
    from isicstack.tabular.cv import run as train_tabular

    art, data = tmp_path / "art", real_dev / "tabular"
    quick = [f"artifacts={art}", f"data_dir={data}", "bags=1", "threads=1",  # $ISIC_SHARED
             "models.xgb.enabled=false", "models.lgbm.num_rounds=60"]
    ensure_folds(FoldsConfig(data_dir=str(data), artifacts=str(art), n_folds=5, seed=0))
    train_tabular(load_config(TabularConfig, "tabular", "real_dev", quick))
    sec = subgroups(load_config(SubgroupsConfig, "subgroups", "smoke",
                                [f"artifacts={art}", f"data_dir={data}"]))
    text = (art / "subgroups" / "subgroups.md").read_text()
    assert "| **iddx_3** (diagnosis) |" in text and "| **attribution** |" in text
    assert sec["models"]["lgbm"]["all"]["positives"] > 200
    res = loco(load_config(LocoConfig, "loco", "real_dev", [
        f"artifacts={art}", f"data_dir={data}", "n_boot=20", "models=[lgbm]",
        f"tabular_overrides={quick[1:]}"]))
    lines = "\n".join(loco_md(read_sections(art, res["fold_hash"])))
    assert "Memorial Sloan Kettering Cancer Center" in lines and "too few positives" in lines
