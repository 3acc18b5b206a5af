"""What makes a config dataclass an ``isic`` command: a ``COMMAND`` declared on the class.

A command is registered where its config lives (like timm's ``@register_model`` beside the
model): ``COMMAND: ClassVar[Command] = Command("loco", "isicstack.evaluation.loco", "...")`` in
the room's light ``config`` module. The CLI's stage table (``pipelines/stages.py``) collects
them from every room's ``config.py``, so adding a command is its run module plus its config
class; no table to edit. The run module is imported only when the command runs: ``--help``
reads the config class alone.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_ATTR = "COMMAND"  # the ClassVar a config dataclass declares its command in


@dataclass(frozen=True)
class Command:
    """``isic <name>``: the module whose ``run(cfg)`` runs it, its help line, its YAML."""

    name: str  # the subcommand, e.g. train-tabular
    run: str  # module with ``run(cfg)``, imported only to run the command
    help: str  # one line: the command in ``isic --help``, the description in its own
    yaml: str = ""  # configs/<yaml>.yaml (its profiles); "" = the command's name
    flags: tuple[str, ...] = ()  # config keys also given as --flags (`isic synth --rows 3000`)

    @property
    def yaml_name(self) -> str:
        return self.yaml or self.name


def command_of(cls: type) -> Command | None:
    """The command ``cls`` declares (only on the class itself, not one it inherits)."""
    found = cls.__dict__.get(COMMAND_ATTR)
    return found if isinstance(found, Command) else None


class CommandExit(Exception):  # noqa: N818 (an outcome, not an error: the work was done)
    """A command that finished its work but must exit with ``code`` (``isic monitor``: 3 when
    a window has an alert, so a scheduler can page someone); ``result``: what ``run`` would
    have returned, for a caller in Python; the message is printed on stderr."""

    def __init__(self, code: int, message: str, result: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.result = result
