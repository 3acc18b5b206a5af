"""The installable package: configs ship as package data, a user folder overrides them, and the
built wheel runs a stage's ``--print-config`` and a prediction from outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from isicstack.pipelines.cli import main
from isicstack.settings.layers import ConfigError, config_dirs, find_config, load_config, tuned_dir
from isicstack.tabular.config import TabularConfig

REPO = Path(__file__).resolve().parents[1]
SKIP_COPY = shutil.ignore_patterns(".git", ".venv", "artifacts", "build", "dist", "raw", "fixtures",
                                   "datasets", "__pycache__", "*.egg-info", ".*_cache", "tuned")


def test_shipped_configs_found_outside_the_repo(tmp_path: Path, monkeypatch):
    """From a folder without ./configs the package's own YAML (and its profiles) are used."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ISIC_CONFIG_DIR", raising=False)
    assert len(config_dirs()) == 1
    assert find_config("tabular.yaml") is not None and find_config("tune/image.yaml")
    cfg = load_config(TabularConfig, "tabular", "full", use_tuned=False)
    assert cfg.neg_ratio == 100.0 and cfg.bags == 2
    assert tuned_dir() == tmp_path / "configs" / "tuned"


def test_user_folder_overrides_file_by_file(tmp_path: Path, monkeypatch):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "tabular.yaml").write_text(yaml.safe_dump({"base": {"bags": 7}}))
    monkeypatch.setenv("ISIC_CONFIG_DIR", str(user))
    assert load_config(TabularConfig, "tabular", use_tuned=False).bags == 7
    assert find_config("folds.yaml") is not None  # not overridden: the shipped file
    (user / "tuned").mkdir()
    (user / "tuned" / "tabular.yaml").write_text("seed: 5\n")
    assert load_config(TabularConfig, "tabular").seed == 5
    monkeypatch.setenv("ISIC_CONFIG_DIR", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="ISIC_CONFIG_DIR.*nope.*not a folder"):
        load_config(TabularConfig, "tabular")
    monkeypatch.delenv("ISIC_CONFIG_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tabular.yaml").write_text("base: {bags: 9}\n")
    assert load_config(TabularConfig, "tabular", use_tuned=False).bags == 9


def test_bad_yaml_names_the_file(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "tabular.yaml").write_text("base: {bags: [1\n")
    monkeypatch.setenv("ISIC_CONFIG_DIR", str(tmp_path))
    assert main(["train-tabular", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "tabular.yaml" in err and "not valid YAML" in err


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel built from a copy of the source tree, installed (no deps) into a target folder."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=SKIP_COPY)
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
          "--quiet", "-w", str(root / "wheels")], root, dict(os.environ))
    wheels = sorted((root / "wheels").glob("isicstack-*.whl"))
    assert len(wheels) == 1
    target = root / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
          "--target", str(target), str(wheels[0])], root, dict(os.environ))
    work = root / "elsewhere"  # no configs/, no source: only the installed package
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ISIC_CONFIG_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    return {"root": root, "site": target, "work": work, "wheel": wheels[0], "env": env}


@pytest.mark.slow
def test_wheel_ships_configs_and_runs_print_config(installed: dict):
    site, work, env = installed["site"], installed["work"], installed["env"]
    shipped = sorted(p.name for p in (site / "isicstack" / "configs").glob("*.yaml"))
    assert shipped == sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert (site / "isicstack" / "configs" / "tune" / "image.yaml").is_file()
    where = _run([sys.executable, "-c", "import isicstack; print(isicstack.__file__)"], work, env)
    assert Path(where.strip()).resolve().is_relative_to(site.resolve())
    isic = [sys.executable, "-m", "isicstack.pipelines.cli"]
    out = yaml.safe_load(_run([*isic, "train-tabular", "--print-config", "--profile", "full"],
                              work, env))
    assert out["profile"] == "full" and out["neg_ratio"] == 100.0 and out["bags"] == 2
    for stage in ("folds", "stack", "predict", "train-image"):
        _run([*isic, stage, "--print-config", "--profile", "full"], work, env)
    script = site / "bin" / "isic"  # the console script pip wrote
    assert "n_folds: 5" in _run([str(script), "folds", "--print-config"], work, env)


@pytest.mark.slow
def test_wheel_predicts_from_outside_the_source_tree(installed: dict, mini_isic: Path,
                                                     tmp_path: Path):
    """Train a small LightGBM here, then `isic predict` with the installed wheel elsewhere."""
    art = tmp_path / "artifacts"
    common = [f"data_dir={mini_isic}", f"artifacts={art}"]
    assert main(["folds", *common, "n_folds=3"]) == 0
    assert main(["train-tabular", "--profile", "smoke", *common, "bags=1", "threads=1",
                 "models.xgb.enabled=false", "models.cat.enabled=false",
                 "models.lgbm.num_rounds=20"]) == 0
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for name in ("test-metadata.csv", "test-image.hdf5", "sample_submission.csv"):
        shutil.copy2(mini_isic / name, test_dir / name)
    out = tmp_path / "submission.csv"
    _run([sys.executable, "-m", "isicstack.pipelines.cli", "predict", "--profile", "smoke",
          f"data_dir={test_dir}", f"artifacts={art}", f"out={out}", "stacker=",
          "fallback=lgbm", "cpu_threads=1"], installed["work"], installed["env"])
    sub = pl.read_csv(out)
    ids = pl.read_csv(test_dir / "test-metadata.csv", infer_schema=False)["isic_id"]
    assert sub.columns == ["isic_id", "target"] and sub["isic_id"].to_list() == ids.to_list()
    assert sub["target"].is_between(0, 1).all()
