"""The chain of `make all`, declared once (configs/chain.yaml): its checks, the plan of a run
(missing inputs first, each once), the Makefile reading it, and a run added in a temporary
chain running end to end on the mini set."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml

from isicstack.ledger.result import read_result
from isicstack.pipelines.chain_run import parse_run_args, plan, run_chain
from isicstack.settings.chain import image_only_run, load_chain, parse_chain
from isicstack.settings.layers import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
COMMON = ["data_dir=auto", "artifacts=a"]


def _chain(text: str):
    return parse_chain(yaml.safe_load(text), "t.yaml", text)


def test_shipped_chain_and_its_roles():
    chain = load_chain()
    assert chain.names()[:2] == ["train-tabular", "train-image-only"]
    assert chain.names()[-3:] == ["stack", "calibrate", "report"]
    assert image_only_run() == "vision_imgonly" and image_only_run("vision_x") == "vision_x"
    assert all(r.help for r in chain.runs)  # `make help` shows every run


@pytest.mark.parametrize(("text", "message"), [
    ("runs:\n  a:\n    stage: stack\n    needs: [x]\n", "needs ['x'], which no earlier run"),
    ("runs:\n  b:\n    stage: stack\n    needs: [x]\n  a:\n    stage: stack\n    provides: [x]\n",
     "no earlier run"),
    ("runs:\n  a:\n    stage: stack\n    provides: [x]\n  b:\n    stage: stack\n"
     "    provides: [x]\n", "already provided by 'a'"),
    ("runs:\n  a:\n    stage: stack\n    need: [x]\n", "unknown key(s) ['need']"),
    ("runs:\n  a:\n    stage: stack\n    role: image_only\n", "must list what it provides"),
    ("runs:\n  a:\n    stage: stack\n    args: [bags]\n", "'bags' is not key=value"),
    ("runs:\n  A:\n    stage: stack\n", "lower-case"),
    ("steps: []\n", "one top-level key 'runs'"),
    ("runs:\n    a:\n      stage: stack\n", "two spaces"),  # valid YAML the Makefile misreads
])
def test_bad_chain_is_refused_naming_the_run(text: str, message: str):
    with pytest.raises(ConfigError, match="t.yaml") as err:
        _chain(text)
    assert message in str(err.value)


def test_declared_outputs_are_what_the_stages_write():
    """Each run's `provides` equals its stage's output names under the run's own overrides, on
    every profile (execute() also checks after a run; this catches drift without training)."""
    from isicstack.tabular.config import TabularConfig
    from isicstack.vision.config import ImageConfig
    from isicstack.vision.train import output_name

    for profile in ("smoke", "default", "full"):
        for run in load_chain().runs:
            if run.stage == "train-image":
                cfg = load_config(ImageConfig, "image", profile, run.overrides(profile))
                name = output_name(cfg)
                outs = [name, f"{name}_image_part"] if cfg.fusion else [name]
            elif run.stage == "train-tabular":
                cfg = load_config(TabularConfig, "tabular", profile, run.overrides(profile))
                outs = [k + cfg.suffix for k, m in cfg.models.items() if m.enabled]
            else:
                continue
            assert set(run.provides) <= set(outs), (profile, run.name, outs)


def test_plan_runs_missing_inputs_first_each_once(tmp_path: Path):
    chain, art = load_chain(), str(tmp_path)
    names = [c.run.name for c in plan(chain, "train-tabular-image", "default", art, COMMON,
                                      {}, [])]
    assert names == ["train-image-only", "train-tabular", "train-image", "train-tabular-image"]
    (tmp_path / "oof").mkdir()
    (tmp_path / "oof" / "lgbm.parquet").write_bytes(b"")
    calls = plan(chain, "stack", "default", art, COMMON, {"stack": ["method=rank_mean"]},
                 ["seed=1"])
    assert [c.run.name for c in calls] == ["stack"]
    assert calls[0].overrides[-2:] == ["method=rank_mean", "seed=1"]


def test_overrides_reach_the_right_runs(tmp_path: Path):
    """ARGS (goal_args) reach the named run only; --args <run> reach that run wherever it runs
    (as a missing input too); the profile's own arguments only that profile."""
    chain = load_chain()
    run_args = parse_run_args(["train-tabular=bags=1 'features.oof_names=[]'"])
    assert run_args == {"train-tabular": ["bags=1", "features.oof_names=[]"]}
    with pytest.raises(ConfigError, match="train-tabular=name='a b"):
        parse_run_args(["train-tabular=name='a b"])  # an unclosed quote names the item
    calls = {c.run.name: c for c in plan(chain, "train-image", "default", str(tmp_path), COMMON,
                                         run_args, ["seed=3"])}
    assert calls["train-tabular"].overrides[-2:] == ["bags=1", "features.oof_names=[]"]
    assert "seed=3" not in calls["train-tabular"].overrides
    assert calls["train-image"].overrides[-1] == "seed=3"
    smoke = plan(chain, "train-image", "smoke", str(tmp_path), COMMON, {}, [])
    assert "optim.steps=60" in calls["train-image"].overrides
    assert not any(a.startswith("optim.steps=") for a in smoke[-1].overrides)
    with pytest.raises(ConfigError, match="every run"):
        plan(chain, "all", "default", str(tmp_path), COMMON, {}, ["seed=3"])
    with pytest.raises(ConfigError, match="not in the chain"):
        run_chain("stack", artifacts=str(tmp_path), run_args={"nope": []}, dry_run=True)
    bogus = _chain("runs:\n  odd:  # x\n    stage: train-nothing\n")
    with pytest.raises(ConfigError, match="unknown stage 'train-nothing'"):
        run_chain("odd", artifacts=str(tmp_path), chain=bogus)  # before anything runs


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
def test_makefile_reads_the_chain(tmp_path: Path):
    """`make all` runs exactly the chain's runs in order; `make help` lists them; a chain in
    ISIC_CONFIG_DIR (one run more) is read instead, with nothing to edit in the Makefile."""
    def goals(env_dir: Path | None = None) -> list[str]:
        extra = [f"ISIC_CONFIG_DIR={env_dir}"] if env_dir else []
        out = subprocess.run(["make", "-n", "--no-print-directory", "all",
                              f"ARTIFACTS={tmp_path / 'art'}", *extra], cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return [ln.split()[2] for ln in out.splitlines() if ln.startswith(".venv/bin/isic chain")]

    assert goals() == load_chain().names()
    helped = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    assert all(name in helped for name in load_chain().names())
    mine = tmp_path / "configs"
    mine.mkdir()
    text = (REPO / "configs" / "chain.yaml").read_text(encoding="utf-8")
    (mine / "chain.yaml").write_text(text + "  extra-run:  # one run more\n    stage: stack\n",
                                     encoding="utf-8")
    assert goals(mine) == [*load_chain().names(), "extra-run"]


def test_a_run_added_to_the_chain_runs_end_to_end(mini_isic: Path, mini_artifacts: Path,
                                                   tmp_path: Path, monkeypatch):
    """One entry in a temporary chain (a second tabular run, seed 2, feeding the stack) is a
    run: `isic chain stack` makes its missing inputs (the first pass, then the new run) and the
    stack reads the new run's scores."""
    mine = tmp_path / "configs"
    mine.mkdir()
    (mine / "chain.yaml").write_text("""runs:
  train-tabular:  # first pass
    stage: train-tabular
    args: ["models.xgb.enabled=false"]
    provides: [lgbm]
  train-tabular-seed2:  # the added run
    stage: train-tabular
    args: ["models.xgb.enabled=false", seed=2, suffix=_s2]
    needs: [lgbm]
    provides: [lgbm_s2]
  stack:  # level 2
    stage: stack
    args: [method=rank_mean]
    needs: [lgbm_s2]
""", encoding="utf-8")
    monkeypatch.setenv("ISIC_CONFIG_DIR", str(mine))
    art = tmp_path / "art"
    art.mkdir()
    shutil.copy(mini_artifacts / "folds.parquet", art / "folds.parquet")
    calls = run_chain("stack", "smoke", str(mini_isic), str(art))
    assert [c.run.name for c in calls] == ["train-tabular", "train-tabular-seed2", "stack"]
    folds = pl.read_parquet(art / "folds.parquet")
    for name in ("lgbm", "lgbm_s2", "stack"):
        oof = pl.read_parquet(art / "oof" / f"{name}.parquet")
        assert oof["isic_id"].equals(folds["isic_id"])
    lgbm, s2 = (pl.read_parquet(art / "oof" / f"{n}.parquet")["pred"] for n in ("lgbm", "lgbm_s2"))
    assert not lgbm.equals(s2)  # its own seed: another run, not a copy
    stack = read_result(art / "runs" / "stack")
    assert "lgbm_s2" in stack.details["input_names"] and stack.seconds > 0
    for run, stage in (("lgbm_s2", "tabular"), ("stack", "stack")):  # one epilogue: ledger.finish
        rdir = art / "runs" / run
        assert {"metrics.json", "config.yaml", "provenance.json"} <= {p.name for p in
                                                                       rdir.iterdir()}
        prov = yaml.safe_load((rdir / "provenance.json").read_text())
        assert prov["conditions"]["stage"] == stage and prov["fold_hash"] and prov["inputs"]
    assert run_chain("stack", "smoke", str(mini_isic), str(art), dry_run=True)[0].run.name \
        == "stack"  # inputs present: nothing retrained


def test_predict_loads_a_run_by_the_stage_that_wrote_it(tmp_path: Path):
    """`isic predict` picks the predictor from the run folder (any run name), not a prefix."""
    import json

    from isicstack.data.layout import run_stage

    runs = tmp_path / "runs"
    (runs / "cnn_any_name").mkdir(parents=True)
    (runs / "cnn_any_name" / "provenance.json").write_text(
        json.dumps({"inputs": {}, "conditions": {"stage": "image"}}))
    (runs / "old_cnn" / "fold0").mkdir(parents=True)  # written before the stage was recorded
    (runs / "gbdt" / "models").mkdir(parents=True)
    assert run_stage(tmp_path, "cnn_any_name") == "image"
    assert run_stage(tmp_path, "cnn_any_name_image_part") == "image"
    assert run_stage(tmp_path, "old_cnn") == "image" and run_stage(tmp_path, "gbdt") == "tabular"
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        run_stage(tmp_path, "missing")
