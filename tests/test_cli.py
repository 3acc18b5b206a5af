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


def _boom(exc: BaseException):
    def run(cfg) -> None:
        raise exc
    return run


def test_unexpected_error_keeps_traceback_with_v(monkeypatch, capsys):
    """A bug (a bare KeyError) says its type and how to see it; -v prints the traceback."""
    from isicstack.data.folds import FoldsConfig
    from isicstack.pipelines import cli

    monkeypatch.setattr(cli, "resolve", lambda stage: (FoldsConfig, _boom(KeyError("oops"))))
    assert main(["folds"]) == 1
    err = capsys.readouterr().err
    assert "KeyError: 'oops'" in err and "isic -v folds" in err and "Traceback" not in err
    assert main(["-v", "folds"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "in run" in err
    assert "KeyError: 'oops'" in err


def test_data_error_is_one_line_without_v(monkeypatch, capsys):
    from isicstack.data.folds import FoldsConfig
    from isicstack.data.io import DataError
    from isicstack.pipelines import cli

    monkeypatch.setattr(cli, "resolve",
                        lambda stage: (FoldsConfig, _boom(DataError("x.csv: column 'a' bad"))))
    assert main(["folds"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "isic folds: error: x.csv: column 'a' bad"
    assert main(["-v", "folds"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_bad_input_from_a_dataloader_worker_is_one_line(monkeypatch, capsys):
    """torch re-raises a worker's error with its traceback as text: the CLI keeps one line."""
    from isicstack.data.folds import FoldsConfig
    from isicstack.pipelines import cli

    text = ("Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most "
            "recent call last):\n  File \"x.py\", line 1, in f\nisicstack.data.crops."
            "BadImageError: t.hdf5: crop 'ISIC_1' is not a decodable JPEG (bad)")
    monkeypatch.setattr(cli, "resolve", lambda stage: (FoldsConfig, _boom(RuntimeError(text))))
    assert main(["folds"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "isic folds: error: t.hdf5: crop 'ISIC_1' is not a decodable JPEG (bad)"
    other = RuntimeError("CUDA out of memory")  # anything else stays a crash with a traceback
    monkeypatch.setattr(cli, "resolve", lambda stage: (FoldsConfig, _boom(other)))
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["folds"])
