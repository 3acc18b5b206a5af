"""The `isic` entry point: config resolution, clear errors, not-yet-built stages."""

from pathlib import Path

import pytest

from isicstack.pipelines.cli import STAGES, main


def test_print_config(capsys):
    assert main(["folds", "--profile", "smoke", "--print-config", "n_folds=4"]) == 0
    out = capsys.readouterr().out
    assert "n_folds: 4" in out and "profile: smoke" in out


def test_unknown_key_exit_2(capsys):
    assert main(["folds", "nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


def test_folds_end_to_end(mini_isic: Path, tmp_path: Path):
    assert main(["folds", f"data_dir={mini_isic}", f"artifacts={tmp_path}", "n_folds=3"]) == 0
    assert (tmp_path / "folds.parquet").is_file()


def test_missing_data_dir_is_error(tmp_path: Path, capsys):
    assert main(["folds", f"data_dir={tmp_path / 'none'}", f"artifacts={tmp_path}"]) == 1
    assert "train-metadata.csv" in capsys.readouterr().err


def test_unbuilt_stage_says_so(monkeypatch, capsys):
    """A registered stage whose module is missing exits 2 with a clear message, not a trace."""
    from isicstack.pipelines import cli

    monkeypatch.setitem(cli.STAGES, "stack", cli.Stage("isicstack.stacking.not_there",
                                                       "StackConfig", "stacking", "x"))
    assert main(["stack"]) == 2
    assert "not implemented yet" in capsys.readouterr().err


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_registered_stage_is_built(stage: str):
    import importlib

    spec = STAGES[stage]
    module = importlib.import_module(spec.module)
    assert hasattr(module, spec.config_class) and callable(module.run)
