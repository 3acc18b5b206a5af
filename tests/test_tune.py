"""Optuna sweeps: shared study across workers and restarts, pruning, export, comparisons."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import polars as pl
import pytest
import yaml

from isicstack.data.provenance import fold_hash
from isicstack.pipelines.config import TuneConfig
from isicstack.pipelines.tune import pruning_reporter, run, split_params, suggest
from isicstack.settings.layers import load_config, tuned_record
from isicstack.tabular.config import TabularConfig
from isicstack.vision.config import ImageConfig

REPO = Path(__file__).resolve().parents[1]
SMALL = ["bags=1", "threads=1", "features.groups=[raw,lesion,categorical]"]
SPACE = {"lgbm": {"learning_rate": {"type": "float", "low": 0.05, "high": 0.2, "log": True},
                  "num_leaves": {"type": "int", "low": 4, "high": 16},
                  "stage.num_rounds": {"type": "int", "low": 10, "high": 20}}}


@pytest.fixture()
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def _cfg(mini_isic: Path, mini_artifacts: Path, space_file: Path, **kw) -> TuneConfig:
    base = dict(stage="tabular", model="lgbm", data_dir=str(mini_isic),
                artifacts=str(mini_artifacts), profile="smoke", trials=2,
                storage=f"sqlite:///{space_file.parent / 'optuna.db'}", study_name="t",
                space_file=str(space_file), tuned_dir=str(space_file.parent / "tuned"),
                stage_overrides=SMALL, heartbeat_interval=0)
    base.update(kw)
    return TuneConfig(**base)


def test_suggest_and_split():
    study = optuna.create_study()
    trial = study.ask()
    values = suggest(trial, {"a": {"type": "float", "low": 0.1, "high": 1.0},
                             "b": {"type": "int", "low": 1, "high": 3},
                             "c": {"type": "categorical", "choices": ["x", "y"]},
                             "stage.num_rounds": {"type": "int", "low": 5, "high": 6}})
    stage, params = split_params(values)
    assert set(params) == {"a", "b", "c"} and set(stage) == {"num_rounds"}
    with pytest.raises(ValueError, match="unknown type"):
        suggest(trial, {"d": {"type": "gaussian"}})


def test_pruning_reporter_prunes_bad_trial():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1,
                                                                   n_warmup_steps=0))
    good = study.ask()
    for k in range(3):
        pruning_reporter(good, True)(k, 0.15)
    study.tell(good, 0.15)
    bad = study.ask()
    with pytest.raises(optuna.TrialPruned):
        pruning_reporter(bad, True)(0, 0.03)


def test_sweep_resumes_and_exports(mini_isic, mini_artifacts, space_file, tmp_path):
    study = run(_cfg(mini_isic, mini_artifacts, space_file))
    assert len(study.trials) == 2
    # trial 0 is the untuned configuration (the baseline the sweep must beat)
    tab = load_config(TabularConfig, "tabular", "smoke", SMALL)
    assert study.trials[0].params == {
        "learning_rate": tab.models["lgbm"].params["learning_rate"],
        "num_leaves": tab.models["lgbm"].params["num_leaves"],
        "stage.num_rounds": tab.models["lgbm"].num_rounds}
    study = run(_cfg(mini_isic, mini_artifacts, space_file))  # a restarted worker joins
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == 4 and len(complete) >= 2
    tuned = yaml.safe_load((tmp_path / "tuned" / "tabular.yaml").read_text())
    assert set(tuned["models"]["lgbm"]["params"]) >= {"learning_rate", "num_leaves"}
    # the next training run picks the tuned file up
    cdir = tmp_path / "cfgs"
    (cdir / "tuned").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "tabular.yaml", cdir / "tabular.yaml")
    shutil.copy(tmp_path / "tuned" / "tabular.yaml", cdir / "tuned" / "tabular.yaml")
    cfg = load_config(TabularConfig, "tabular", config_dir=cdir)
    assert cfg.models["lgbm"].num_rounds == study.best_params["stage.num_rounds"]
    assert cfg.models["lgbm"].params["num_leaves"] == study.best_params["num_leaves"]
    rec = tuned_record(cfg)  # recorded in the stage's provenance; the report flags the run
    assert rec["file"] == "tabular.yaml" and rec["tuned_by"]["study"] == "t"
    assert rec["tuned_by"]["trial"] == study.best_trial.number
    assert tuned_record(load_config(TabularConfig, "tabular", use_tuned=False)) is None


def _worker(cfg_overrides: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "isicstack.pipelines.cli", "tune", "tabular",
                             "--profile", "smoke", *cfg_overrides], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_claimed_trial(name: str, url: str, proc: subprocess.Popen,
                            timeout: float = 120.0) -> None:
    """Until the study ``name`` has a trial that is no longer waiting (or ``proc`` ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            trials = optuna.load_study(study_name=name, storage=url).trials
        except KeyError:  # the study does not exist yet
            trials = []
        if any(t.state != optuna.trial.TrialState.WAITING for t in trials):
            return
        time.sleep(0.2)
    assert proc.poll() in (None, 0), proc.stderr.read()


def _storages() -> list:
    urls = [pytest.param("sqlite", id="sqlite")]
    pg = os.environ.get("OPTUNA_TEST_POSTGRES_URL")
    urls.append(pytest.param(pg, id="postgresql", marks=pytest.mark.skipif(
        not pg, reason="no PostgreSQL: set OPTUNA_TEST_POSTGRES_URL (.ci/run starts one)")))
    return urls


@pytest.mark.slow
@pytest.mark.parametrize("url", _storages())
def test_two_workers_and_a_killed_one(url, mini_isic, mini_artifacts, space_file, tmp_path):
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    name = f"multi-{os.getpid()}-{time.time_ns()}"
    common = [f"data_dir={mini_isic}", f"artifacts={mini_artifacts}", f"storage={url}",
              f"study_name={name}", f"space_file={space_file}", "export=false",
              f"stage_overrides={json.dumps(SMALL)}", "heartbeat_interval=1", "grace_period=3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the second worker starts once the first has claimed trial 0 (the enqueued current
    # configuration): SQLite has no row locks, so two processes starting at once can both pop
    # that one waiting trial and the second `tell` fails (seen under a loaded `make test`)
    workers = [_worker([*common, "trials=2", "seed=0"], env)]
    _wait_for_claimed_trial(name, url, workers[0])
    workers.append(_worker([*common, "trials=2", "seed=1"], env))
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read()
    study = optuna.load_study(study_name=name, storage=url)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == 4 and sorted(numbers) == list(range(4))
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(t.state in done for t in study.trials)

    # kill a worker in the middle of a trial: the study stays usable, a restart continues it
    # its trials are long (many rounds) so it dies mid-trial, after the trial's first heartbeat:
    # Optuna can only fail a trial that has a heartbeat (one killed between ask and its first
    # heartbeat stays RUNNING, but blocks nothing)
    slow_space = tmp_path / "slow.yaml"
    slow_space.write_text(yaml.safe_dump({"lgbm": {**SPACE["lgbm"], "stage.num_rounds": {
        "type": "int", "low": 3000, "high": 4000}}}))
    # no pruning: a trial pruned after its first fold (fast on an idle box) would end before
    # the kill, and the one killed would be the next, possibly without a heartbeat yet
    slow = _worker([*common, "trials=50", "seed=5", f"space_file={slow_space}", "pruning=false"],
                   env)
    deadline = time.time() + 120
    while time.time() < deadline:
        running = [t for t in optuna.load_study(study_name=name, storage=url).trials
                   if t.state == optuna.trial.TrialState.RUNNING]
        if running:
            break
        time.sleep(0.2)
    assert running, "the worker never started a trial"
    time.sleep(2.5)  # > 2 heartbeats of 1 s
    assert slow.poll() is None, "the slow trial finished before it could be killed"
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    time.sleep(4)  # past the grace period: the heartbeat is stale
    again = _worker([*common, "trials=1", "seed=6"], env)
    assert again.wait(timeout=300) == 0, again.stderr.read()
    trials = optuna.load_study(study_name=name, storage=url).trials
    states = [t.state for t in trials]
    assert trials[running[0].number].state == optuna.trial.TrialState.FAIL
    assert sum(s in done for s in states) == 4 + 1
    assert optuna.trial.TrialState.RUNNING not in states


def test_image_sweep_reports_folds_and_exports(mini_isic, mini_artifacts, tmp_path):
    """The image objective runs the real stage per trial, reports each fold, exports the dotted
    keys nested (as configs/image.yaml has them), which the stage's next load merges."""
    art = tmp_path / "art"
    art.mkdir()
    shutil.copy(mini_artifacts / "folds.parquet", art / "folds.parquet")
    space = tmp_path / "image.yaml"
    space.write_text(yaml.safe_dump({"default": {
        "optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
        "data.neg_ratio": {"type": "float", "low": 1.0, "high": 4.0}}}))
    small = ["model.name=test_resnet", "model.image_size=32", "data.batch_size=16",
             "optim.steps=2", "data.num_workers=0", "fusion=false", "runtime.accelerator=cpu",
             "runtime.cpu_threads=1"]
    cfg = TuneConfig(stage="image", data_dir=str(mini_isic), artifacts=str(art), profile="smoke",
                     trials=2, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="img",
                     space_file=str(space), tuned_dir=str(tmp_path / "tuned"),
                     stage_overrides=small, heartbeat_interval=0, pruning=False)
    study = run(cfg)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(study.trials[0].intermediate_values) == [0, 1, 2]  # one report per fold
    assert all(0.0 <= t.value <= 0.2 for t in study.trials)
    tuned = yaml.safe_load((tmp_path / "tuned" / "image.yaml").read_text())
    assert set(tuned) == {"optim", "data", "tuned_by"}
    best = study.best_params
    assert tuned["optim"] == {"lr": best["optim.lr"]}
    assert tuned["data"] == {"neg_ratio": best["data.neg_ratio"]}
    cdir = tmp_path / "cfgs"  # the stage's next run merges it
    (cdir / "tuned").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "image.yaml", cdir / "image.yaml")
    shutil.copy(tmp_path / "tuned" / "image.yaml", cdir / "tuned" / "image.yaml")
    merged = load_config(ImageConfig, "image", "smoke", config_dir=cdir)
    assert merged.optim.lr == best["optim.lr"] and merged.data.neg_ratio == best["data.neg_ratio"]
    by = tuned["tuned_by"]  # what a run merging this file records (the report's † note)
    assert by["study"] == "img" and by["trial"] == study.best_trial.number
    assert by["finished_trials"] == 2 and by["fold_hash"] == fold_hash(pl.read_parquet(
        art / "folds.parquet"))
    assert not (art / "oof").exists() and not (art / "tune" / "image" / "trial0").exists()


def test_image_space_and_trials_with_flat_keys_are_migrated(mini_isic, tmp_path, caplog):
    """A search space (or a study's older trial) written with the flat keys of before the
    groups: read as the dotted keys, one warning naming the file; the export is nested."""
    from isicstack.pipelines.tune_stages import image_objective

    space = tmp_path / "image.yaml"
    space.write_text(yaml.safe_dump({"default": {
        "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
        "data.neg_ratio": {"type": "float", "low": 1.0, "high": 4.0}}}))
    cfg = TuneConfig(stage="image", data_dir=str(mini_isic), artifacts=str(tmp_path / "art"),
                     profile="smoke", space_file=str(space))
    with caplog.at_level("WARNING"):
        _, extra = image_objective(cfg)
    assert f"{space}: written with flat keys" in caplog.text and "optim.{lr}" in caplog.text
    assert extra["defaults"] == {"optim.lr": 1e-3, "data.neg_ratio": 3.0}  # the smoke profile
    assert extra["export"]({"lr": 0.01, "data.neg_ratio": 2.0}) == {
        "optim": {"lr": 0.01}, "data": {"neg_ratio": 2.0}}
    space.write_text(yaml.safe_dump({"default": {"optim.lrr": {"low": 0.1, "high": 1.0}}}))
    with pytest.raises(ValueError, match=r"\['optim.lrr'\] are not ImageConfig keys"):
        image_objective(cfg)


def test_a_tuned_run_records_which_study_shaped_it(mini_isic, mini_artifacts, tmp_path):
    """A real tabular run with a tuned file that touched only LightGBM: runs/lgbm's provenance
    names the study and trial, runs/xgb's does not (it was not tuned)."""
    from isicstack.data.provenance import read_provenance
    from isicstack.tabular.cv import run as train_tabular

    cdir, art = tmp_path / "cfgs", tmp_path / "art"
    (cdir / "tuned").mkdir(parents=True)
    art.mkdir()
    shutil.copy(REPO / "configs" / "tabular.yaml", cdir / "tabular.yaml")
    shutil.copy(mini_artifacts / "folds.parquet", art / "folds.parquet")
    (cdir / "tuned" / "tabular.yaml").write_text(yaml.safe_dump({
        "models": {"lgbm": {"num_rounds": 12}},
        "tuned_by": {"study": "s9", "trial": 3, "value": 0.1, "finished_trials": 4,
                     "profile": "smoke", "fold_hash": "abc"}}))
    cfg = load_config(TabularConfig, "tabular", "smoke",
                      [f"data_dir={mini_isic}", f"artifacts={art}", *SMALL], config_dir=cdir)
    assert cfg.models["lgbm"].num_rounds == 12
    train_tabular(cfg)
    rec = read_provenance(art / "runs" / "lgbm")["tuned"]
    assert rec["tuned_by"]["study"] == "s9" and rec["keys"] == ["models.lgbm.num_rounds"]
    assert read_provenance(art / "runs" / "xgb")["tuned"] is None
