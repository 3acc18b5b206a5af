"""The run ledger: smoke stage runs logged to MLflow, one run per stage run, read back.

One module-scoped chain (LightGBM, the image smoke profile, a logistic stack) on the session's
mini-ISIC with tracking on, into the default store inside its artifacts folder; the other tests
turn tracking off or point it at a store that fails, and check that the runs still finish.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from app_fixtures import make_clinic_artifacts
from browser_fixtures import free_port

from isicstack.data.metric import pauc
from isicstack.evaluation.config import RunsConfig
from isicstack.evaluation.runs_table import run as runs
from isicstack.ledger import store as tracking
from isicstack.ledger.result import RunResult, read_result
from isicstack.stacking.config import StackConfig
from isicstack.stacking.stack import run as stack
from isicstack.vision.mlflow_log import OncePerProcess

mlflow = pytest.importorskip("mlflow")


def _stack(mini_isic: Path, art: Path) -> RunResult:
    [result] = stack(StackConfig(data_dir=str(mini_isic), artifacts=str(art), method="logistic",
                                 submission=False))
    return result


@pytest.fixture(scope="module")
def tracked(mini_isic: Path, mini_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Path:
    """Artifacts of a smoke chain logged to the default store (``ISIC_TRACKING=auto``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tracking.ENV, "auto")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        return make_clinic_artifacts(mini_isic, mini_artifacts,
                                     tmp_path_factory.mktemp("tracked") / "artifacts")


def _oof_pauc(art: Path, name: str) -> float:
    """pAUC of ``oof/<name>.parquet`` against the folds' labels, recomputed here."""
    oof = pl.read_parquet(art / "folds.parquet").join(
        pl.read_parquet(art / "oof" / f"{name}.parquet").select("isic_id", "pred"), on="isic_id")
    return pauc(oof["target"].to_numpy(), oof["pred"].to_numpy())


def _runs(art: Path) -> dict[str, object]:
    client = mlflow.tracking.MlflowClient(f"sqlite:///{art.resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_one_run_per_stage_run_with_its_scores(tracked: Path, monkeypatch):
    assert "MLFLOW_TRACKING_URI" not in os.environ  # no stage run set it for the process
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tracked.resolve() / 'mlflow.db'}")
    frame = mlflow.search_runs(experiment_names=[tracking.EXPERIMENT])
    assert sorted(frame["tags.mlflow.runName"]) == ["lgbm", "stack", "vision_imgonly"]
    runs_ = _runs(tracked)
    for name, stage in {"lgbm": "tabular", "vision_imgonly": "image", "stack": "stack"}.items():
        run, folder = runs_[name], tracked / "runs" / name
        result = read_result(folder)  # one shape, whichever stage wrote it
        prov = json.loads((folder / "provenance.json").read_text())
        assert run.info.status == "FINISHED" and result.stage == stage
        assert run.data.metrics["oof_pauc"] == pytest.approx(result.pauc, abs=1e-12)
        assert result.pauc == pytest.approx(_oof_pauc(tracked, name), abs=1e-12)
        assert run.data.metrics["n_pos"] == result.n_pos and run.data.metrics["seconds"] > 0
        tags = run.data.tags
        assert tags["isic.stage"] == stage and tags["isic.fold_hash"] == prov["fold_hash"]
        assert result.fold_hash == prov["fold_hash"]
        assert tags["isic.cond.threads"] == str(prov["conditions"]["threads"])
        assert tags["isic.input.folds"] == prov["inputs"]["folds"]["sha256"]
        client = mlflow.tracking.MlflowClient()
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"metrics.json", "config.yaml", "provenance.json"} <= files
        folds = client.get_metric_history(run.info.run_id, "fold_pauc")
        assert sorted(m.step for m in folds) == [0, 1, 2]
        assert {m.step: m.value for m in folds} == pytest.approx(
            {k: f.pauc for k, f in result.folds.items()}, abs=1e-12)
    # what only one stage has reaches the ledger too, nested keys dotted, folds as steps
    stack_metrics = runs_["stack"].data.metrics
    assert "methods.logistic.oof_pauc" in stack_metrics
    assert stack_metrics["best_of_methods.oof_pauc"] == pytest.approx(
        read_result(tracked / "runs" / "stack").details["best_of_methods"]["oof_pauc"])
    assert "features_seconds" in runs_["lgbm"].data.metrics
    image = runs_["vision_imgonly"]
    params = image.data.params  # the image config's dotted keys
    assert params["optim.steps"] == "4" and params["model.name"] == "test_resnet"
    assert "steps" not in params and "model" not in params
    assert image.data.tags["isic.profile"] == "smoke"
    loss = mlflow.tracking.MlflowClient().get_metric_history(image.info.run_id,
                                                             "fold0-train/loss")
    assert loss, "the fold's per-pass loss reaches the stage run through Lightning"


def test_runs_table_filters_by_stage(tracked: Path, capsys):
    rows = runs(RunsConfig(artifacts=str(tracked), stage="image"))
    assert [r["name"] for r in rows] == ["vision_imgonly"]
    out = capsys.readouterr().out
    assert "vision_imgonly" in out and f"{rows[0]['oof_pauc']:.4f}" in out and "lgbm" not in out
    rows = runs(RunsConfig(artifacts=str(tracked)))
    assert {r["stage"] for r in rows} == {"tabular", "image", "stack"}
    assert all(r["fold_hash"] for r in rows)
    assert runs(RunsConfig(artifacts=str(tracked.parent / "nothing"))) == []
    assert "no tracked runs" in capsys.readouterr().out


def test_tracking_none_logs_nothing(tracked: Path, mini_isic: Path, tmp_path: Path,
                                    monkeypatch):
    monkeypatch.setenv(tracking.ENV, "none")
    art = tmp_path / "artifacts"
    shutil.copytree(tracked, art, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    _stack(mini_isic, art)
    assert (art / "runs" / "stack" / "metrics.json").is_file()
    assert not (art / "mlflow.db").exists() and tracking.log_run("stack", art, art) is None


@pytest.mark.parametrize("store", ["server", "logging"])
def test_failing_store_warns_and_the_run_goes_on(store: str, tracked: Path, mini_isic: Path,
                                                 tmp_path: Path, monkeypatch, caplog):
    art = tmp_path / "artifacts"
    shutil.copytree(tracked, art, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    if store == "server":  # nothing listens there: one TCP probe, no minutes of retries
        monkeypatch.setenv(tracking.ENV, f"http://127.0.0.1:{free_port()}")
    else:  # the store answers, then a write fails
        monkeypatch.setenv(tracking.ENV, f"sqlite:///{tmp_path / 'other.db'}")

        def broken(*args, **kwargs):
            raise RuntimeError("disk full")

        monkeypatch.setattr(tracking, "_record", broken)
    with caplog.at_level(logging.WARNING, logger="isicstack.ledger.store"):
        result = _stack(mini_isic, art)
    assert (art / "runs" / "stack" / "metrics.json").is_file()
    assert result == read_result(art / "runs" / "stack")
    assert result.pauc == pytest.approx(_oof_pauc(art, "stack"), abs=1e-12)
    warnings = [r for r in caplog.records if "the run goes on" in r.getMessage()]
    assert len(warnings) == 1


def test_without_mlflow_one_line_says_how(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setenv(tracking.ENV, "auto")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("mlflow", "mlflow.tracking"):
        monkeypatch.setitem(sys.modules, name, None)  # import now fails as if not installed
    monkeypatch.setattr(tracking, "_NOTED", [])
    monkeypatch.setattr(tracking, "_FAILED", set())
    monkeypatch.setattr(tracking, "_CLIENTS", {})
    with caplog.at_level(logging.INFO, logger="isicstack.ledger.store"):
        assert tracking.log_run("tabular", tmp_path, tmp_path) is None
        assert tracking.log_run("stack", tmp_path, tmp_path) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "pip install 'isicstack[mlflow]'" in lines[0]


def test_optuna_trials_are_linked_to_their_study(tmp_path: Path, monkeypatch):
    import optuna

    from isicstack.pipelines.tune_log import trial_callbacks

    monkeypatch.setenv(tracking.ENV, "auto")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = SimpleNamespace(artifacts=str(tmp_path), stage="tabular", profile="smoke")

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.report(x / 2, step=0)
        return x / 5

    study = optuna.create_study(study_name="tabular-lgbm-smoke", direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=3, callbacks=trial_callbacks(cfg))
    client = mlflow.tracking.MlflowClient(tracking.store_uri(tmp_path))
    exp = client.get_experiment_by_name("optuna/tabular-lgbm-smoke")
    found = {int(r.data.tags["optuna.trial"]): r for r in client.search_runs([exp.experiment_id])}
    assert sorted(found) == [0, 1, 2]
    for trial in study.trials:
        run = found[trial.number]
        assert run.data.tags["optuna.study"] == study.study_name
        assert run.data.metrics["oof_pauc"] == pytest.approx(trial.value)
        assert float(run.data.params["x"]) == pytest.approx(trial.params["x"])
    monkeypatch.setenv(tracking.ENV, "none")
    assert trial_callbacks(cfg) == []


def test_lightning_banners_once_and_no_advertisement():
    seen = []
    filt = OncePerProcess()
    for text in ("GPU available: False, used: False", "💡 Tip: try installing litlogger",
                 "GPU available: False, used: False", "TPU available: False, using: 0 TPU cores"):
        record = logging.LogRecord("pytorch_lightning.utilities.rank_zero", logging.INFO, "", 0,
                                   text, None, None)
        if filt.filter(record):
            seen.append(text)
    assert seen == ["GPU available: False, used: False",
                    "TPU available: False, using: 0 TPU cores"]
    warning = logging.LogRecord("x", logging.WARNING, "", 0, "same", None, None)
    assert filt.filter(warning) and filt.filter(warning)


def test_report_folder_is_logged_with_its_figures(tmp_path: Path, monkeypatch):
    """The report stage's hook (``log_run("report", out, cfg.artifacts, cfg, metrics)``): each
    model's OOF pAUC as the report hands it over, the config from ``cfg`` (the folder has no
    config.yaml), the PNGs as figures."""
    from isicstack.evaluation.config import ReportConfig

    monkeypatch.setenv(tracking.ENV, "auto")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"models": {"lgbm": {"oof_pauc": 0.125}}}))
    (out / "roc.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    run_id = tracking.log_run("report", out, tmp_path, ReportConfig(artifacts=str(tmp_path)),
                              metrics={"models": {"lgbm": {"oof_pauc": 0.125}}})
    client = mlflow.tracking.MlflowClient(tracking.store_uri(tmp_path))
    run = client.get_run(run_id)
    assert run.data.metrics["models.lgbm.oof_pauc"] == 0.125
    assert run.data.params["artifacts"] == str(tmp_path)
    assert [a.path for a in client.list_artifacts(run_id, "figures")] == ["figures/roc.png"]
