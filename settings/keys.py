"""Dotted keys of nested configs, and keys that moved into a group (kept apart from
:mod:`isicstack.settings.layers`, which reads the files, to keep both short).

A nested config is addressed by dotted keys (``optim.lr``): on the command line, in Optuna
search spaces and in MLflow params. :func:`nest` and :func:`flatten` convert between a dotted
mapping and a nested one; :func:`lookup` and :func:`with_keys` read and replace a dotted key of a
dataclass.

Moved keys: a stage whose flat config was split into groups declares, once, beside its
dataclass, ``MOVED_KEYS: ClassVar[dict[str, str]]`` = old flat key -> new dotted key (the image
stage: ``model_name -> model.name``, ``steps -> optim.steps``). Everything that reads a config
back goes through this module with that mapping, never through per-caller renames:

- a file written with the flat keys (a YAML layer, a tuned file, a saved run's ``config.yaml``)
  is migrated by :func:`migrate`, with one warning naming the file and the keys;
- a dotted-key mapping (an Optuna search space, a trial's parameters) by :func:`rename_moved`;
- a flat key on the command line is refused (:func:`refuse_moved`): the error names the new key.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

MOVED_ATTR = "MOVED_KEYS"  # the ClassVar a config dataclass declares its moved keys in
_WARNED: set[str] = set()  # files already warned about in this process


class ConfigError(ValueError):
    """A config key that does not exist or a value of the wrong type."""


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and empty mappings stay values)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def field_paths(cls: type) -> list[str]:
    """Every leaf field of dataclass ``cls`` as a dotted key, nested dataclasses followed."""
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = hints[f.name]
        out += ([f"{f.name}.{p}" for p in field_paths(tp)]
                if isinstance(tp, type) and dataclasses.is_dataclass(tp) else [f.name])
    return out


def lookup(cfg: Any, key: str) -> Any:
    """The value of dotted ``key`` in a config dataclass (``lookup(cfg, "optim.lr")``)."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def with_keys(cfg: T, values: Mapping[str, Any]) -> T:
    """A copy of ``cfg`` with dotted keys replaced (``{"optim.lr": 3e-4, "name": "x"}``); the
    groups are copied too, so ``cfg`` itself is never changed."""
    top: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if rest:
            groups.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, sub in groups.items():
        top[head] = with_keys(getattr(cfg, head), sub)
    return dataclasses.replace(cfg, **top)  # type: ignore[type-var]


def moved_keys(cls: type | None) -> dict[str, str]:
    """Old flat key -> new dotted key, as ``cls`` declares it (``MOVED_KEYS``; {} if none)."""
    return dict(getattr(cls, MOVED_ATTR, None) or {})


def moved_message(keys: list[str], moved: Mapping[str, str]) -> str:
    """``model_name is now model.name; steps is now optim.steps``."""
    return "; ".join(f"{k} is now {moved[k]}" for k in keys)


def refuse_moved(values: Mapping[str, Any], moved: Mapping[str, str], where: str) -> None:
    """A ConfigError naming the new key of every old flat key among ``values``' top keys."""
    old = [k for k in values if k in moved]
    if old:
        raise ConfigError(f"{where}: {moved_message(old, moved)} (the keys were grouped: "
                          f"write {', '.join(f'{moved[k]}=...' for k in old)})")


def _has(doc: Mapping[str, Any], key: str) -> bool:
    """Whether dotted ``key`` is set in nested ``doc``."""
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def describe_moved(old: list[str], moved: Mapping[str, str]) -> str:
    """``model_name -> model.name; optim.{steps, lr}``: a renamed key in full, the others (same
    name, now in a group) listed by group."""
    renamed = [f"{k} -> {moved[k]}" for k in old if moved[k].rpartition(".")[2] != k]
    groups: dict[str, list[str]] = {}
    for k in old:
        group, _, leaf = moved[k].rpartition(".")
        if leaf == k:
            groups.setdefault(group, []).append(k)
    return "; ".join(renamed + [f"{g}.{{{', '.join(ks)}}}" for g, ks in groups.items()])


def warn_moved(source: str, old: list[str], moved: Mapping[str, str]) -> None:
    """The one warning (per process) for a file or mapping read with old flat keys."""
    if source in _WARNED:
        return
    _WARNED.add(source)
    log.warning("%s: written with flat keys, read as the grouped ones (%s); rewrite it with "
                "the new keys to silence this", source, describe_moved(old, moved))


def move(doc: Mapping[str, Any], moved: Mapping[str, str], source: str
         ) -> tuple[dict[str, Any], list[str]]:
    """``doc`` with its old flat top keys moved to their dotted place, and those keys; no
    warning (:func:`migrate` warns). A key set both ways is an error: which one was meant?"""
    old = [k for k in doc if k in moved]
    if not old:
        return dict(doc), []
    both = [k for k in old if _has(doc, moved[k])]
    if both:
        raise ConfigError(f"{source}: {', '.join(f'{k} and {moved[k]}' for k in both)} both "
                          f"set; keep only the new key ({moved_message(both, moved)})")
    out = {k: v for k, v in doc.items() if k not in moved}
    for k in old:
        node = out
        *parents, leaf = moved[k].split(".")
        for p in parents:
            group = node.get(p) or {}
            if not isinstance(group, Mapping):
                raise ConfigError(f"{source}: {p!r} must be a mapping of keys, got {group!r}")
            node[p] = dict(group)  # a copy: the caller's mapping stays as it was
            node = node[p]
        node[leaf] = doc[k]
    return out, old


def migrate(doc: Mapping[str, Any], moved: Mapping[str, str], source: str) -> dict[str, Any]:
    """A nested config mapping written with flat keys, as the grouped keys (one warning)."""
    out, old = move(doc, moved, source)
    if old:
        warn_moved(source, old, moved)
    return out


def migrate_layers(doc: Mapping[str, Any], moved: Mapping[str, str], source: str
                   ) -> dict[str, Any]:
    """A stage YAML (``base`` + ``profiles``) with old flat keys moved in every layer; one
    warning for the file."""
    base, old = move(doc.get("base") or {}, moved, f"{source} base")
    profiles = {}
    for name, layer in (doc.get("profiles") or {}).items():
        profiles[name], found = move(layer or {}, moved, f"{source} profile {name}")
        old += [k for k in found if k not in old]
    if old:
        warn_moved(source, old, moved)
    return {"base": base, "profiles": profiles}


def rename_moved(values: Mapping[str, Any], moved: Mapping[str, str], source: str
                 ) -> dict[str, Any]:
    """A dotted-key mapping (search space, trial parameters) with old flat keys renamed (one
    warning); a key given both ways is an error, as in :func:`move`."""
    old = [k for k in values if k in moved]
    both = [k for k in old if moved[k] in values]
    if both:
        raise ConfigError(f"{source}: {', '.join(f'{k} and {moved[k]}' for k in both)} both "
                          f"set; keep only the new key")
    if old:
        warn_moved(source, old, moved)
    return {moved.get(k, k): v for k, v in values.items()}
