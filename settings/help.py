"""Every config key of a stage with its type, default and meaning: ``isic <stage> --help``.

Read from the source of the stage's config dataclass, never by importing it: stage modules
import torch, LightGBM or Gradio (seconds on a busy CPU), and ``--help`` must be quick and do
nothing. A field's meaning is its trailing ``# comment`` (else the comment lines just above it),
so it is written once, beside the field. A default is what the stage resolves with no
``key=value`` override: the dataclass default under the YAML base, profile and tuned file
(:func:`isicstack.settings.layers.stage_values`). Nested dataclasses give dotted keys
(``drift.auc_warn``); a ``dict`` of dataclasses one per configured entry (``models.lgbm.kind``).
A user's YAML written with keys that have since moved into a group (the class's ``MOVED_KEYS``,
read as a literal) is migrated as the stage migrates it, so its values are the ones shown.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isicstack.settings.keys import MOVED_ATTR
from isicstack.settings.layers import ConfigError, find_config, stage_values

PACKAGE = Path(__file__).resolve().parent
MISSING = object()  # a key with no default anywhere


class Source(str):
    """A default that is code, not a literal (``list(METHODS)``): shown as written."""


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
    if value is MISSING:
        return "required"
    if isinstance(value, Source):
        return str(value)
    return json.dumps(value, default=str)


def module_file(module: str) -> Path:
    """``isicstack.a.b`` -> this package's ``a/b.py`` (or ``a/b/__init__.py``)."""
    base = PACKAGE.joinpath(*module.split(".")[1:])
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"


@functools.cache
def _parse(module: str) -> tuple[ast.Module, list[str], dict[int, str]]:
    """A module's syntax tree, source lines and ``{line: comment text}``."""
    text = module_file(module).read_text(encoding="utf-8")
    comments = {t.start[0]: t.string.lstrip("#").strip()
                for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type == tokenize.COMMENT}
    return ast.parse(text), text.splitlines(), comments


def _imported(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if module_file(module).name != "__init__.py":
        parts = parts[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


def find_class(module: str, name: str) -> tuple[str, ast.ClassDef]:
    """The module and definition of class ``name`` as seen from ``module`` (imports followed)."""
    tree = _parse(module)[0]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return find_class(_imported(module, node), alias.name)
    raise LookupError(f"{module_file(module)}: no class {name!r}")


def _module_alias(module: str, name: str) -> str | None:
    """The module bound to ``name`` in ``module`` (``import a.b as name``, ``from a import b``)."""
    for node in _parse(module)[0].body:
        for alias in getattr(node, "names", []):
            if (alias.asname or alias.name.split(".")[0]) != name:
                continue
            if isinstance(node, ast.Import):
                return alias.name
            if isinstance(node, ast.ImportFrom):
                candidate = f"{_imported(module, node)}.{alias.name}"
                return candidate if module_file(candidate).is_file() else None
    return None


def _dataclass(module: str, node: ast.expr) -> tuple[str, ast.ClassDef] | None:
    """The config dataclass an annotation names (``Inner``, ``mod.Inner``), else None."""
    try:
        if isinstance(node, ast.Name):
            found = find_class(module, node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            other = _module_alias(module, node.value.id)
            if other is None:
                return None
            found = find_class(other, node.attr)
        else:
            return None
    except LookupError:
        return None
    is_dc = any("dataclass" in ast.unparse(d) for d in found[1].decorator_list)
    return found if is_dc else None


def _type(node: ast.expr) -> str:
    """The annotation as written; ``Literal['a', 'b']`` as ``a|b``."""
    if (isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("Literal")):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return "|".join(str(ast.literal_eval(i)) for i in items)
    return ast.unparse(node)


def _value(node: ast.expr | None) -> Any:
    """A default expression as a value, or as its source text when it is not a literal."""
    if node is None:
        return MISSING
    if isinstance(node, ast.Call) and ast.unparse(node.func) in ("field", "dataclasses.field"):
        kw = {k.arg: k.value for k in node.keywords}
        if "default" in kw:
            return _value(kw["default"])
        factory = kw.get("default_factory")
        if factory is None:
            return MISSING
        if isinstance(factory, ast.Lambda):
            return _value(factory.body)
        return {"list": [], "dict": {}, "set": []}.get(ast.unparse(factory),
                                                       Source(f"{ast.unparse(factory)}()"))
    try:
        return ast.literal_eval(node)
    except ValueError:
        return Source(ast.unparse(node))


def _meaning(module: str, node: ast.AnnAssign) -> str:
    """The field's trailing comment, else the comment-only lines right above it."""
    _, lines, comments = _parse(module)
    for n in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        if n in comments:
            return comments[n]
    above: list[str] = []
    n = node.lineno - 1
    while n >= 1 and lines[n - 1].strip().startswith("#"):
        above.insert(0, comments.get(n, ""))
        n -= 1
    return " ".join(above)


def keys(module: str, cls: ast.ClassDef, values: dict[str, Any],
         prefix: str = "") -> Iterator[Key]:
    """Every key of dataclass ``cls`` (defined in ``module``) under resolved ``values``."""
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name, ann = node.target.id, node.annotation
        if "ClassVar" in ast.unparse(ann):
            continue
        value = values.get(name, MISSING) if isinstance(values, dict) else MISSING
        inner = _dataclass(module, ann)
        if inner is not None:
            yield from keys(*inner, value if isinstance(value, dict) else {},
                            f"{prefix}{name}.")
            continue
        if (isinstance(ann, ast.Subscript) and ast.unparse(ann.value) == "dict"
                and isinstance(ann.slice, ast.Tuple)
                and (item := _dataclass(module, ann.slice.elts[1])) is not None):
            entries = value if isinstance(value, dict) and value else {"<name>": {}}
            for entry, sub in entries.items():
                yield from keys(*item, sub if isinstance(sub, dict) else {},
                                f"{prefix}{name}.{entry}.")
            continue
        default = value if value is not MISSING else _value(node.value)
        yield Key(prefix + name, _type(ann), default, _meaning(module, node))


def moved_keys(cls: ast.ClassDef) -> dict[str, str]:
    """The class's ``MOVED_KEYS`` literal (old flat key -> dotted key); {} when it has none."""
    for node in cls.body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id == MOVED_ATTR and node.value is not None):
            return dict(ast.literal_eval(node.value))
    return {}


def stage_keys(module: str, class_name: str, yaml_stage: str,
               profile: str = "default") -> tuple[list[Key], str]:
    """The keys of a stage's config and a header saying where their defaults come from."""
    where = find_config(f"{yaml_stage}.yaml")
    note = f"defaults: {where or 'the dataclass'}, profile {profile!r}, tuned file if any"
    found = find_class(module, class_name)
    try:
        values, _ = stage_values(yaml_stage, profile, moved=moved_keys(found[1]))
    except ConfigError as err:  # help still lists the keys, with the dataclass defaults
        values, note = {}, f"dataclass defaults ({err})"
    values["profile"] = profile
    return list(keys(*found, values)), note


def epilog(module: str, class_name: str, yaml_stage: str, profile: str = "default") -> str:
    """The ``--help`` text listing every key: ``key (type, default): meaning``."""
    try:
        found, note = stage_keys(module, class_name, yaml_stage, profile)
    except (OSError, LookupError, SyntaxError) as err:  # help itself must not fail
        return f"config keys: not listed ({err}); --print-config shows the resolved config"
    head = f"config keys (set with key=value; {note}):"
    return "\n".join([head, *(k.line() for k in found)])
