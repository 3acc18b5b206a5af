"""Typed stage configs from ``configs/<stage>.yaml`` with profiles and ``key=value`` overrides.

Every key's default lives in one place, its dataclass (``<room>/config.py``). A YAML file holds
``profiles:`` (named partial overrides such as ``smoke`` or ``full``) and may hold ``base:`` for
a key whose field has no default (no shipped file has one: tests/test_config.py). Resolution
order: dataclass defaults < ``base`` < profile < ``configs/tuned/<stage>.yaml`` (when present
and enabled) < command-line overrides; mappings merge key by key at every layer, so a profile
setting one GBDT parameter keeps the other defaults. Unknown keys and wrong types are errors
naming the key, because a silently ignored typo in a sweep wastes hours.

Keys that moved (a stage's flat config split into groups, ``MOVED_KEYS`` on its dataclass, see
:mod:`isicstack.settings.keys`): every YAML layer, tuned file and saved run config written with
the old flat keys is migrated as it is read, with one warning naming the file; an old flat key
as a ``key=value`` override is refused with its new name.

Where the YAML comes from: the ``configs/`` shipped inside the package (wheel package data, read
through ``importlib.resources``; the repository's ``configs/`` in a checkout), overridden file by
file by a user folder: ``$ISIC_CONFIG_DIR``, else ``./configs`` when the working directory has
one. Tuned parameters are written to and read from ``<user folder>/tuned/`` (``./configs/tuned``
by default), never into an installed package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import logging
import os
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from isicstack.data.io import write_text
from isicstack.settings.build import build, default_values
from isicstack.settings.keys import (
    ConfigError,
    flatten,
    migrate,
    migrate_layers,
    moved_keys,
    nest,
    refuse_moved,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

ENV_VAR = "ISIC_CONFIG_DIR"
TUNED_BY = "tuned_by"  # record of the study that wrote a tuned file (not a setting)


def package_config_dir() -> Traversable:
    """The ``configs/`` shipped with the package (the repository's folder in a checkout)."""
    return importlib.resources.files("isicstack") / "configs"


CONFIG_DIR = package_config_dir()


def user_config_dir() -> Path | None:
    """The user's override folder: ``$ISIC_CONFIG_DIR``, else ``./configs`` if it exists."""
    env = os.environ.get(ENV_VAR)
    if env:
        if not Path(env).is_dir():
            raise ConfigError(f"{ENV_VAR}={env}: not a folder (it should hold <stage>.yaml files)")
        return Path(env)
    local = Path.cwd() / "configs"
    return local if local.is_dir() else None


def config_dirs(config_dir: str | os.PathLike[str] | None = None) -> list[Traversable]:
    """Folders searched for a YAML, first match wins: ``config_dir`` alone when given."""
    if config_dir is not None:
        return [Path(config_dir)]
    user = user_config_dir()
    return [*([user] if user is not None else []), package_config_dir()]


def find_config(relpath: str, config_dir: str | os.PathLike[str] | None = None
                ) -> Traversable | None:
    """The first ``relpath`` (e.g. ``tabular.yaml``, ``tune/image.yaml``) in :func:`config_dirs`."""
    for folder in config_dirs(config_dir):
        path = folder.joinpath(*relpath.split("/"))
        if path.is_file():
            return path
    return None


def tuned_dir(config_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``isic tune`` writes and stages read tuned parameters (never site-packages)."""
    if config_dir is not None:
        return Path(config_dir) / "tuned"
    return (user_config_dir() or Path.cwd() / "configs") / "tuned"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge, everything else replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _scalar(raw: str) -> Any:
    """A command-line value as YAML (``3``, ``true``, ``[a, b]``); text YAML cannot parse (such
    as ``...`` or an unclosed ``[``) stays the string it is."""
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; values are parsed as YAML scalars."""
    dotted: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        dotted[key] = _scalar(raw)
    return nest(dotted)


def read_yaml(path: Traversable, expected: str = "a mapping with 'base' and 'profiles'"
              ) -> dict[str, Any]:
    """A YAML mapping; a syntax error or a non-mapping names the file (and ``expected``)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return doc


def known_profiles(config_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Profiles named by any stage YAML: a profile is global, a stage may not override it."""
    names = {"default"}
    for folder in config_dirs(config_dir):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.endswith(".yaml") and path.is_file():
                doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                names |= set(doc.get("profiles") or {})
    return sorted(names)


def stage_values(stage: str, profile: str = "default",
                 config_dir: str | os.PathLike[str] | None = None, use_tuned: bool = True,
                 moved: Mapping[str, str] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The YAML layers of ``stage`` merged (base < profile < tuned file), before overrides,
    and the tuned file's record (None when none was merged). Reads files, writes nothing.
    ``moved``: the stage's moved keys (old flat -> dotted), migrated in every layer."""
    moved = moved or {}
    path = find_config(f"{stage}.yaml", config_dir)
    doc: dict[str, Any] = {}
    if path is None:
        where = ", ".join(str(d) for d in config_dirs(config_dir))
        # the defaults are the dataclass's; a YAML only adds profiles (a new command needs none)
        log.debug("no %s.yaml in %s: the dataclass defaults, no profiles", stage, where)
    else:
        doc = read_yaml(path)
        stray = set(doc) - {"base", "profiles"}
        if stray:
            raise ConfigError(f"{path}: top-level keys must be 'base' and 'profiles', got {stray}")
        doc = migrate_layers(doc, moved, str(path))
    values = dict(doc.get("base") or {})
    profiles = doc.get("profiles") or {}
    if profile not in profiles and profile != "default":
        known = known_profiles(config_dir)
        if profile not in known:
            where = ", ".join(str(d) for d in config_dirs(config_dir))
            raise ConfigError(f"unknown profile {profile!r} ({where}); known: {', '.join(known)}")
        log.debug("%s: no profile %r, using the defaults", path, profile)
    values = _merge(values, profiles.get(profile) or {})
    tuned = tuned_dir(config_dir) / f"{stage}.yaml"
    record = None
    if use_tuned and tuned.is_file():
        doc_tuned = migrate(read_yaml(tuned, "a mapping of config keys"), moved, str(tuned))
        record = {"file": tuned.name, "sha256": hashlib.sha256(tuned.read_bytes()).hexdigest(),
                  "tuned_by": doc_tuned.pop(TUNED_BY, None), "keys": dotted_keys(doc_tuned)}
        values = _merge(values, doc_tuned)
        log.info("%s: using tuned parameters from %s", stage, tuned)
    return values, record


def config_values(cls: type, stage: str, profile: str = "default",
                  config_dir: str | os.PathLike[str] | None = None, use_tuned: bool = True
                  ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What ``stage`` resolves to before command-line overrides, as a mapping: the defaults of
    ``cls`` under its YAML layers (:func:`stage_values`, moved keys migrated), ``profile`` set
    where ``cls`` has that key; and the tuned file's record (None when none was merged).
    Mappings merge key by key, so a profile setting one GBDT parameter keeps the others."""
    layers, record = stage_values(stage, profile, config_dir, use_tuned, moved_keys(cls))
    values = _merge(default_values(cls), layers)
    if "profile" in {f.name for f in dataclasses.fields(cls)}:  # type: ignore[arg-type]
        values["profile"] = profile  # stages derive profile-specific paths from it
    return values, record


def load_config(
    cls: type[T],
    stage: str,
    profile: str = "default",
    overrides: list[str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
    use_tuned: bool = True,
) -> T:
    """Resolve the config of ``stage`` (``configs/<stage>.yaml``) into dataclass ``cls``."""
    values, record = config_values(cls, stage, profile, config_dir, use_tuned)
    over = parse_overrides(overrides or [])
    refuse_moved(over, moved_keys(cls), "override")  # the command line is written now: new keys
    cfg = build(cls, _merge(values, over))
    if record is not None:  # not a field: never saved as a setting, read by tuned_record
        object.__setattr__(cfg, "_tuned", record)
    return cfg


def dotted_keys(doc: dict[str, Any], prefix: str = "") -> list[str]:
    """Every leaf of a nested mapping as a dotted key (``models.lgbm.params.num_leaves``)."""
    return sorted(flatten(doc, prefix))


def tuned_record(cfg: Any, model: str | None = None) -> dict[str, Any] | None:
    """Which tuned file (and study / trial, under its ``tuned_by`` key) shaped ``cfg``; None
    when no tuned parameters were merged. Stages record it in ``provenance.json`` so the report
    can flag a CV measured after tuning on the same folds (optimistic). ``model`` (a tabular
    model key): None also when the file tuned only other models' keys (``models.<other>.*``)."""
    rec = getattr(cfg, "_tuned", None)
    if rec is None or model is None:
        return rec
    mine = [k for k in rec.get("keys", [])
            if k.startswith(f"models.{model}.") or not k.startswith("models.")]
    return rec if mine or "keys" not in rec else None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for saving and logging)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Save the resolved config as YAML beside a run's outputs (atomically)."""
    return write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), path)


def read_saved_config(cls: type, path: Path) -> dict[str, Any]:
    """A config file a run saved, as a mapping of ``cls``'s current keys: one written before
    keys moved into groups is migrated (see :mod:`isicstack.settings.keys`)."""
    return migrate(read_yaml(path, "a mapping of config keys"), moved_keys(cls), str(path))


def read_run_config(cls: type, rdir: Path) -> Any:
    """The resolved training config saved beside a run (``config.yaml``), as ``cls``."""
    path = rdir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run's config.yaml not found; the predict path "
                                "rebuilds the model from it")
    return build(cls, read_saved_config(cls, path))
