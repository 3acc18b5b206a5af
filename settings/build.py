"""A mapping -> a typed stage config: every key known, every value of its declared type.

Kept apart from :mod:`isicstack.settings.layers`, which finds and layers the YAML files: this
module only turns one merged mapping into the dataclass, naming the dotted key of any unknown
key or wrong type (a silently ignored typo in a sweep wastes hours).
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from typing import Any, TypeVar

from isicstack.settings.keys import ConfigError, moved_keys, moved_message

T = TypeVar("T")


def _check(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` coerced to type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            with contextlib.suppress(ConfigError):  # the next member of the union may fit
                return _check(value, arg, key)
        raise ConfigError(f"config key {key!r}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 reads on/off and yes/no as booleans
            words = ("on", "yes", "true") if value else ("off", "no", "false")
            spelled = [a for a in args if isinstance(a, str) and a.lower() in words]
            value = spelled[0] if len(spelled) == 1 else value
        if value not in args:
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return build(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _check(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key {key!r}: expected {tp.__name__}, got {value!r}")
    return value


def default_values(cls: type) -> dict[str, Any]:
    """The defaults of dataclass ``cls`` as plain data, the bottom layer a stage resolves on:
    nested dataclasses as mappings (a field whose factory is a dataclass gives that class's own
    defaults, without building it); a field without a default is left out (it is required)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        factory = f.default_factory
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            out[f.name] = default_values(factory)
        elif factory is not dataclasses.MISSING:
            out[f.name] = _plain(factory())
        elif f.default is not dataclasses.MISSING:
            out[f.name] = _plain(f.default)
    return out


def _plain(value: Any) -> Any:
    """A default as YAML-like data: dataclasses as mappings, lists and mappings copied."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def build(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from a mapping, checking every key and type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in values if k not in fields]
    moved = moved_keys(cls)
    if any(k in moved for k in unknown):  # a flat key of a mapping that was not migrated
        raise ConfigError(f"config key(s) of {cls.__name__}: "
                          f"{moved_message([k for k in unknown if k in moved], moved)}")
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _check(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)
