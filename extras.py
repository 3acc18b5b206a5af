"""The package's declared dependencies, and one clear message when an optional one is missing.

The core install runs the whole pipeline; CatBoost, the Optuna dashboard, PostgreSQL study
storage, Grad-CAM, the web app and MLflow tracking are extras. What is declared, and which extra
provides what, is read from the package's own metadata (pyproject.toml is the one list), so a
new dependency needs no edit here: :func:`declared` feeds the libraries every run records
(:mod:`isicstack.conditions`) and :func:`require` the extra its error names. Importing an extra
through :func:`require` turns a bare ``ModuleNotFoundError`` deep in a run into a one-line error
that says which extra to install and, as its caller says, how to do without it.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

DISTRIBUTION = "isicstack"
# the dev extra's tools (tests, lint) run beside the package, never in a run: left out
DEV_EXTRA = "dev"
# import names whose distribution is named otherwise (the rest share their name, e.g. catboost).
# Explicit, not importlib.metadata.packages_distributions(): require() needs the name exactly
# when the package is not installed, and then no metadata says it.
DISTRIBUTIONS = {"psycopg2": "psycopg2-binary", "pytorch_grad_cam": "grad-cam"}
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# the extra a metadata requirement line belongs to (``...; extra == "app"``)
EXTRA_MARKER = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")


class MissingExtraError(ImportError):
    """An optional dependency that is not installed; the message names the extra."""


def canonical(name: str) -> str:
    """A distribution's normalised name (PEP 503): ``PyYAML`` and ``pyyaml`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _from_metadata(requirements: list[str]) -> dict[str, str]:
    """Distribution -> extra ('' = core) from the metadata's ``name>=1; extra == "x"`` lines."""
    out: dict[str, str] = {}
    for line in requirements:
        name, extra = _NAME.match(line), EXTRA_MARKER.search(line)
        if name is None:
            raise ValueError(f"{DISTRIBUTION} metadata: unreadable requirement {line!r}")
        out.setdefault(canonical(name.group(1)), extra.group(1) if extra else "")
    return out


def _from_pyproject(path: Path) -> dict[str, str]:
    """Distribution -> extra ('' = core) from ``[project]`` of ``path`` (a source checkout)."""
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as err:
        raise RuntimeError(f"{path}: no readable [project] table, and the {DISTRIBUTION} "
                           f"distribution is not installed ({err})") from err
    groups = {"": project.get("dependencies", []), **project.get("optional-dependencies", {})}
    return _from_metadata([f'{req.split(";")[0]}; extra == "{extra}"' if extra else req
                           for extra, reqs in groups.items() for req in reqs])


def declared() -> dict[str, str]:
    """Each distribution the package declares -> the extra providing it ('' = a core
    dependency), in declaration order, the dev extra and the self-reference left out. Read
    from the installed distribution's metadata (the wheel the Kaggle notebook installs, an
    editable install), else from ``pyproject.toml`` beside the package (never installed)."""
    try:
        found = _from_metadata(metadata.requires(DISTRIBUTION) or [])
    except metadata.PackageNotFoundError:
        found = _from_pyproject(Path(__file__).resolve().with_name("pyproject.toml"))
    return {name: extra for name, extra in found.items()
            if extra != DEV_EXTRA and name != DISTRIBUTION}


def extra_of(module: str) -> str:
    """The optional extra providing the import name ``module`` ('' when it is core or not
    declared)."""
    top = module.split(".")[0]
    return declared().get(canonical(DISTRIBUTIONS.get(top, top)), "")


def require(module: str, *, needed_by: str, instead: str) -> ModuleType:
    """Import ``module`` of an optional extra, or raise :class:`MissingExtraError` naming the
    extra to install; ``needed_by`` (what uses it) and ``instead`` (how to do without) are said
    where it is needed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        extra = extra_of(module)
        if err.name != module.split(".")[0] or not extra:
            raise
        raise MissingExtraError(
            f"{needed_by} needs the optional package {module!r}: pip install "
            f"'isicstack[{extra}]' (`make setup` installs every extra), or {instead}"
        ) from err
