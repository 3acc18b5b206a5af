"""The `isic` entry point: config resolution, clear errors, the stage table, and a ``--help``
per stage that lists every config key with its default and meaning without loading a model
library."""

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from isicstack.pipelines.cli import main
from isicstack.pipelines.stages import STAGES, config_class, resolve
from isicstack.settings.help import stage_keys
from isicstack.settings.layers import load_config


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


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_registered_stage_is_built(stage: str):
    """Each stage names a ``run`` and a config dataclass defined in its room's ``config``
    module (the light one ``--help`` imports)."""
    cls, run = resolve(stage)
    spec = STAGES[stage]
    room = spec.run.rsplit(".", 1)[0]
    module = spec.config.partition(":")[0]
    assert spec.config == f"{module}:{cls.__name__}" and cls.__module__ == module
    assert module.rpartition(".")[0] == room and module.rpartition(".")[2].endswith("config")
    assert dataclasses.is_dataclass(cls) and callable(run)


def _boom(exc: BaseException):
    def run(cfg) -> None:
        raise exc
    return run


def test_unexpected_error_keeps_traceback_with_v(monkeypatch, capsys):
    """A bug (a bare KeyError) says its type and how to see it; -v prints the traceback."""
    from isicstack.data.config import FoldsConfig
    from isicstack.pipelines import stages

    monkeypatch.setattr(stages, "resolve", lambda stage: (FoldsConfig, _boom(KeyError("oops"))))
    assert main(["folds"]) == 1
    err = capsys.readouterr().err
    assert "KeyError: 'oops'" in err and "isic -v folds" in err and "Traceback" not in err
    assert main(["-v", "folds"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "in run" in err
    assert "KeyError: 'oops'" in err


def test_data_error_is_one_line_without_v(monkeypatch, capsys):
    from isicstack.data.config import FoldsConfig
    from isicstack.data.io import DataError
    from isicstack.pipelines import stages

    monkeypatch.setattr(stages, "resolve",
                        lambda stage: (FoldsConfig, _boom(DataError("x.csv: column 'a' bad"))))
    assert main(["folds"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "isic folds: error: x.csv: column 'a' bad"
    assert main(["-v", "folds"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_bad_input_from_a_dataloader_worker_is_one_line(monkeypatch, capsys):
    """torch re-raises a worker's error with its traceback as text: the CLI keeps one line."""
    from isicstack.data.config import FoldsConfig
    from isicstack.pipelines import stages

    text = ("Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most "
            "recent call last):\n  File \"x.py\", line 1, in f\nisicstack.data.crops."
            "BadImageError: t.hdf5: crop 'ISIC_1' is not a decodable JPEG (bad)")
    monkeypatch.setattr(stages, "resolve", lambda stage: (FoldsConfig, _boom(RuntimeError(text))))
    assert main(["folds"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "isic folds: error: t.hdf5: crop 'ISIC_1' is not a decodable JPEG (bad)"
    other = RuntimeError("CUDA out of memory")  # anything else stays a crash with a traceback
    monkeypatch.setattr(stages, "resolve", lambda stage: (FoldsConfig, _boom(other)))
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["folds"])


def _flatten(cfg: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Dotted keys of a resolved config: nested dataclasses and dicts of them expanded."""
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from _flatten(value, f"{prefix}{f.name}.")
        elif (isinstance(value, dict) and value
              and all(dataclasses.is_dataclass(v) for v in value.values())):
            for name, v in value.items():
                yield from _flatten(v, f"{prefix}{f.name}.{name}.")
        else:
            yield prefix + f.name, value


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_help_lists_every_config_key_with_default_and_meaning(stage: str, capsys, monkeypatch):
    """`isic <stage> --help` names every key of the stage's config (from the imported
    dataclass, resolved), each with the default the stage resolves and a meaning."""
    monkeypatch.delenv("ISIC_CONFIG_DIR", raising=False)
    monkeypatch.delenv("PROFILE", raising=False)
    spec = STAGES[stage]
    cls = config_class(stage)
    expected = dict(_flatten(load_config(cls, spec.yaml, "default")))
    with pytest.raises(SystemExit) as done:
        main([stage, "--help"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {k.key: k for k in stage_keys(cls, spec.yaml)[0]}
    assert set(listed) == set(expected)
    for key, value in expected.items():
        k = listed[key]
        assert k.meaning.strip(), f"{stage}: config key {key!r} has no meaning (# on its field)"
        assert k.line() in lines and k.line().startswith(f"  {key} (")
        assert k.default == value, f"{stage}: {key} shown as {k.default!r}, resolves to {value!r}"


HEAVY = ("torch", "torchvision", "timm", "pytorch_lightning", "lightning", "lightgbm", "xgboost",
         "catboost", "sklearn", "optuna", "gradio", "matplotlib", "h5py", "mlflow")


def test_help_imports_no_stage_and_writes_nothing(tmp_path: Path):
    """Every stage's --help imports its light config module only: no model library, Gradio,
    matplotlib or HDF5 (checked after each stage, so the first one loading any is named), and
    writes no file. The check can fail: a stage's run module does load them."""
    code = ("import sys\nfrom isicstack.pipelines.cli import main\n"
            "from isicstack.pipelines.stages import STAGES\n"
            f"heavy = set({HEAVY!r})\n"
            "for stage in STAGES:\n    try:\n        main([stage, '--help'])\n"
            "    except SystemExit as e:\n        assert e.code == 0, stage\n"
            "    print('HEAVY', stage, sorted(heavy & set(sys.modules)))\n"
            "import isicstack.tabular.cv, isicstack.evaluation.report\n"
            "print('RUN MODULES', sorted(heavy & set(sys.modules)))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ISIC_CONFIG_DIR", "PROFILE")}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    loaded = [line for line in res.stdout.splitlines() if line.startswith("HEAVY ")]
    assert loaded == [f"HEAVY {stage} []" for stage in STAGES]
    ran = next(line for line in res.stdout.splitlines() if line.startswith("RUN MODULES"))
    assert all(f"'{m}'" in ran for m in ("lightgbm", "xgboost", "sklearn", "matplotlib"))
    assert "  optim.steps (int, 240): optimizer steps per fold" in res.stdout  # the dataclass's
    assert list(tmp_path.iterdir()) == []


def test_help_shows_the_profile_defaults(capsys, monkeypatch):
    monkeypatch.delenv("ISIC_CONFIG_DIR", raising=False)
    with pytest.raises(SystemExit):
        main(["train-image", "--profile", "smoke", "--help"])
    out = capsys.readouterr().out
    assert "profile 'smoke'" in out and "\n  optim.steps (int, 4): " in out
    with pytest.raises(SystemExit) as done:  # an unknown profile: still the keys, and why
        main(["folds", "--help", "--profile=huge"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "unknown profile 'huge'" in out and "\n  n_folds (" in out
    with pytest.raises(SystemExit) as done:
        main(["compare", "--help"])
    assert done.value.code == 0 and "run_a" in capsys.readouterr().out
