"""The ``isic`` stages: which module runs each one, which light module holds its config class,
and which YAML configures it. Read by the command line (``cli``) and by the chain runner
(``chain_run``), which runs a declared run through the same resolution as ``isic <stage>``.

The table is collected, not written: every config dataclass that declares a ``COMMAND``
(:class:`isicstack.settings.command.Command`) in its room's ``config.py`` is a stage, so a new
command is its run module plus its config class. The config modules import no model library:
``isic <stage> --help`` imports the config class alone (:func:`config_class`); the run module
(torch, a GBDT library, Gradio) is imported only to run the stage (:func:`resolve`).

What ``run(cfg)`` returns, by kind of stage:

- writes run folders (``train-tabular``, ``train-image``, ``stack``, ``calibrate``):
  ``list[RunResult]`` (:mod:`isicstack.ledger.result`), one per folder written, as its
  ``metrics.json`` holds it;
- writes one document (``report``, ``evaluate``, ``subgroups``, ``loco``, ``explain``,
  ``predict``, ``ingest``): that document as the dict written to its JSON file
  (``report.json``, ...), so a caller reads what a later reader of the file reads;
  ``predict-images`` (a CSV): the dict it logs (``out``, ``rows``, ``seconds``);
- writes one file or folder (``synth``, ``folds``, ``kaggle-package``, ``bundle``): its
  ``Path``; ``promote``: the alias, model name and version it points at;
- ``tune``: the ``optuna.Study`` (its trials are the result; Optuna's own type);
- ``runs``: the table's rows; ``app``: nothing (it serves until stopped).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isicstack.settings.command import command_of
from isicstack.settings.layers import ConfigError, load_config

PACKAGE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stage:
    """Where a stage's ``run`` and config class live, which YAML configures it, its help line."""

    run: str  # module whose ``run(cfg)`` runs the stage (imported only to run it)
    config: str  # ``module:Class`` of the config dataclass, in a light ``<room>.config`` module
    yaml: str  # configs/<yaml>.yaml
    help: str  # one line: the stage in ``isic --help``, the description in its own
    flags: tuple[str, ...] = ()  # config keys it also takes as ``--flag value``


def config_modules() -> list[str]:
    """Every room's light config modules (``isicstack.<room>.config``, and
    ``isicstack.<room>.<name>_config`` where a second command of a room has its own owner), in
    name order."""
    paths = sorted({*PACKAGE.glob("*/config.py"), *PACKAGE.glob("*/*_config.py")})
    return [f"isicstack.{p.parent.name}.{p.stem}" for p in paths
            if (p.parent / "__init__.py").is_file()]


def collect(modules: list[str]) -> dict[str, Stage]:
    """The stages declared in ``modules``: each dataclass defined there with a ``COMMAND``; a
    name declared twice is an error naming both classes."""
    found: dict[str, Stage] = {}
    for name in modules:
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and dataclasses.is_dataclass(cls)
                    and cls.__module__ == name and (cmd := command_of(cls)) is not None):
                continue
            if cmd.name in found:
                raise ConfigError(f"isic {cmd.name}: declared by {found[cmd.name].config} and "
                                  f"{name}:{cls.__name__}")
            found[cmd.name] = Stage(cmd.run, f"{name}:{cls.__name__}", cmd.yaml_name, cmd.help,
                                   cmd.flags)
    return dict(sorted(found.items()))


STAGES: dict[str, Stage] = collect(config_modules())


def config_class(stage: str) -> type:
    """The config dataclass of ``stage``, imported from its light module (no model library)."""
    module, _, name = STAGES[stage].config.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve(stage: str) -> tuple[type, Callable[[Any], Any]]:
    """The config class of ``stage`` and its ``run`` (the run module is imported here)."""
    return config_class(stage), importlib.import_module(STAGES[stage].run).run


def stage_config(stage: str, profile: str, overrides: list[str]) -> tuple[Any, Any]:
    """The resolved config of ``stage`` (YAML, profile, tuned file, overrides) and its ``run``,
    which imports the run module when called: ``--print-config`` and ``isic chain --dry-run``
    read configs only (``isic predict --print-config`` took 14 s importing torch)."""
    cfg = load_config(config_class(stage), STAGES[stage].yaml, profile, overrides)
    return cfg, lambda resolved: resolve(stage)[1](resolved)
