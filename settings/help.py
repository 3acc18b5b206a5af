"""Every config key of a stage with its type, default and meaning: ``isic <stage> --help``.

Read from the stage's config dataclass, imported from its room's light ``config`` module (no
model library loads: tests/test_cli.py). A field's meaning is its trailing ``# comment`` in the
class's source (else the comment lines just above it), so it is written once, beside the field.
A default is what the stage resolves with no ``key=value`` override: the dataclass default under
the YAML profile and tuned file (:func:`isicstack.settings.layers.config_values`, which migrates
a file written with keys that have since moved into a group, as the stage does). Nested
dataclasses give dotted keys (``drift.auc_warn``); a ``dict`` of dataclasses one per configured
entry (``models.lgbm.kind``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import tokenize
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from isicstack.settings.build import default_values
from isicstack.settings.layers import ConfigError, config_values, find_config

MISSING = object()  # a key with no default anywhere


@dataclass(frozen=True)
class Key:
    """One config key as ``--help`` lists it."""

    key: str
    type: str
    default: Any
    meaning: str

    def line(self) -> str:
        return f"  {self.key} ({self.type}, {show(self.default)}): {self.meaning or '?'}"


def show(value: Any) -> str:
    """A default as it would be written on the command line (JSON is valid YAML)."""
    return "required" if value is MISSING else json.dumps(value, default=str)


def type_name(tp: Any) -> str:
    """An annotation as written (``list[str]``, ``int | str``); ``Literal['a', 'b']`` as ``a|b``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    if tp is type(None):
        return "None"
    return "Any" if tp is Any else getattr(tp, "__name__", str(tp))


def _statements(lines: list[str]) -> dict[str, tuple[int, int]]:
    """``{name: (first line, last line)}`` of each statement of the class body that starts with
    a name (its fields), lines counted from 1 in ``lines``."""
    spans: dict[str, tuple[int, int]] = {}
    depth, at_start, current = 0, True, None
    for tok in tokenize.generate_tokens(functools.partial(next, iter(lines), "")):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NEWLINE:
            if current is not None:
                spans.setdefault(current[0], (current[1], tok.start[0]))
            at_start, current = True, None
        elif tok.type not in (tokenize.NL, tokenize.COMMENT):
            if at_start and depth == 1 and tok.type == tokenize.NAME:
                current = (tok.string, tok.start[0])
            at_start = False
    return spans


@functools.cache
def meanings(cls: type) -> dict[str, str]:
    """``{field: meaning}`` of class ``cls``: a field's trailing comment, else the comment-only
    lines right above it; {} when its source cannot be read (``?`` is shown)."""
    try:
        lines = inspect.getsourcelines(cls)[0]
    except (OSError, TypeError):
        return {}
    comments = {t.start[0]: t.string.lstrip("#").strip()
                for t in tokenize.generate_tokens(functools.partial(next, iter(lines), ""))
                if t.type == tokenize.COMMENT}
    out: dict[str, str] = {}
    for name, (first, last) in _statements(lines).items():
        trailing = [comments[n] for n in range(first, last + 1) if n in comments]
        above: list[str] = []
        n = first - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, comments.get(n, ""))
            n -= 1
        out[name] = trailing[0] if trailing else " ".join(above)
    return out


def keys(cls: type, values: dict[str, Any], prefix: str = "") -> Iterator[Key]:
    """Every key of dataclass ``cls`` under resolved ``values`` (its own defaults where a key is
    not there, as in a ``dict`` entry that names a few keys)."""
    hints, meaning, defaults = typing.get_type_hints(cls), meanings(cls), default_values(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = hints[f.name]
        value = values.get(f.name, defaults.get(f.name, MISSING))
        args = typing.get_args(tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            yield from keys(tp, value if isinstance(value, dict) else {}, f"{prefix}{f.name}.")
        elif (typing.get_origin(tp) is dict and len(args) == 2
              and isinstance(args[1], type) and dataclasses.is_dataclass(args[1])):
            entries = value if isinstance(value, dict) and value else {"<name>": {}}
            for entry, sub in entries.items():
                yield from keys(args[1], sub if isinstance(sub, dict) else {},
                                f"{prefix}{f.name}.{entry}.")
        else:
            yield Key(prefix + f.name, type_name(tp), value, meaning.get(f.name, ""))


def stage_keys(cls: type, yaml_stage: str, profile: str = "default") -> tuple[list[Key], str]:
    """The keys of a stage's config class and a header saying where their defaults come from."""
    where = find_config(f"{yaml_stage}.yaml") or f"no {yaml_stage}.yaml"
    note = (f"defaults: {cls.__name__} ({cls.__module__}) under profile {profile!r} of {where} "
            "and the tuned file if any")
    try:
        values, _ = config_values(cls, yaml_stage, profile)
    except ConfigError as err:  # help still lists the keys, with the dataclass defaults
        values, note = default_values(cls), f"dataclass defaults ({err})"
        if "profile" in values:
            values["profile"] = profile
    return list(keys(cls, values)), note


def epilog(cls: type, yaml_stage: str, profile: str = "default") -> str:
    """The ``--help`` text listing every key: ``key (type, default): meaning``."""
    found, note = stage_keys(cls, yaml_stage, profile)
    return "\n".join([f"config keys (set with key=value; {note}):", *(k.line() for k in found)])
