"""The runs of ``make all``, declared once in ``configs/chain.yaml`` (read here, run by
``isicstack.pipelines.chain_run``).

Before this file a run was spelled in the Makefile (target, prerequisites, ``*_ARGS``), in the
stage list of ``make all`` and, by name, in every consumer of the image-only run; now those read
one declaration. The file is looked up like any config (``$ISIC_CONFIG_DIR``, ``./configs``,
then the package's), so a user's chain replaces the shipped one as a whole. It lives in the
config layer, below the stages: Grad-CAM, the app and ``isic predict-images`` ask it for the
image-only run without importing the pipeline.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from isicstack.settings.layers import ConfigError, find_config, read_yaml

CHAIN_FILE = "chain.yaml"
ROLES = ("image_only",)
NAME = re.compile(r"^[a-z][a-z0-9_-]*$")  # a make target and a file-name-safe word


@dataclass(frozen=True)
class ChainRun:
    """One run: the ``isic`` stage, its overrides, the OOF names it reads and provides."""

    name: str
    stage: str
    args: list[str] = field(default_factory=list)
    profile_args: dict[str, list[str]] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    role: str = ""
    help: str = ""

    def overrides(self, profile: str) -> list[str]:
        """The run's own ``key=value`` overrides under ``profile`` (declared ones first)."""
        return [*self.args, *self.profile_args.get(profile, [])]


@dataclass(frozen=True)
class Chain:
    """The declared runs in ``make all`` order, and the file they came from."""

    runs: list[ChainRun]
    source: str

    def names(self) -> list[str]:
        return [r.name for r in self.runs]

    def get(self, name: str) -> ChainRun:
        """The run called ``name``; an error listing the declared runs otherwise."""
        for run in self.runs:
            if run.name == name:
                return run
        raise ConfigError(f"{self.source}: no run {name!r} in the chain; declared: "
                          f"{', '.join(self.names())}")

    def provider(self, output: str) -> ChainRun | None:
        """The run that provides OOF name ``output`` (None: no run of the chain writes it)."""
        return next((r for r in self.runs if output in r.provides), None)

    def role(self, role: str) -> str:
        """The first output of the run holding ``role`` (e.g. ``vision_imgonly``)."""
        for run in self.runs:
            if run.role == role:
                return run.provides[0]
        raise ConfigError(f"{self.source}: no run has role {role!r}; give one run "
                          f"`role: {role}` (and `provides`), or name the run explicitly")


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return list(value)


def _run_lines(text: str) -> list[tuple[str, str]]:
    """``(name, help)`` of each ``  <name>:  # <help>`` line (help "" without a comment): the
    lines the Makefile reads run names from; YAML drops the comments."""
    found = re.findall(r"^  ([a-z][a-z0-9_-]*):(?:[ \t]*#[ \t]*(.+))?", text, flags=re.M)
    return [(name, line.strip()) for name, line in found]


def parse_chain(doc: dict[str, Any], source: str, text: str = "") -> Chain:
    """Check a chain mapping and build it; every error names the file and the run."""
    stray = set(doc) - {"runs"}
    if stray or not isinstance(doc.get("runs"), dict) or not doc["runs"]:
        raise ConfigError(f"{source}: expected one top-level key 'runs' mapping run names to "
                          f"entries (got {sorted(doc)})")
    lines = _run_lines(text)
    helps = dict(lines)
    runs: list[ChainRun] = []
    provided: dict[str, str] = {}
    for name, entry in doc["runs"].items():
        where = f"{source}: run {name!r}"
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{where}: a run name is lower-case letters, digits, - and _")
        if not isinstance(entry, dict) or "stage" not in entry:
            raise ConfigError(f"{where}: needs at least `stage: <isic command>`")
        unknown = set(entry) - {"stage", "args", "profile_args", "needs", "provides", "role"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        profile_args = entry.get("profile_args") or {}
        if not isinstance(profile_args, dict):
            raise ConfigError(f"{where}: profile_args maps a profile to a list of key=value")
        run = ChainRun(
            name=name, stage=str(entry["stage"]),
            args=_strings(entry.get("args") or [], f"{where} args"),
            profile_args={str(p): _strings(v, f"{where} profile_args.{p}")
                          for p, v in profile_args.items()},
            needs=_strings(entry.get("needs") or [], f"{where} needs"),
            provides=_strings(entry.get("provides") or [], f"{where} provides"),
            role=str(entry.get("role") or ""), help=helps.get(name, ""))
        for arg in [*run.args, *(a for v in run.profile_args.values() for a in v)]:
            if "=" not in arg:
                raise ConfigError(f"{where}: argument {arg!r} is not key=value")
        if run.role and (run.role not in ROLES or not run.provides):
            raise ConfigError(f"{where}: role {run.role!r}: known roles {list(ROLES)}, and the "
                              "run must list what it provides")
        missing = [n for n in run.needs if n not in provided]
        if missing:  # `make all` runs in file order: a need must come from an earlier run
            raise ConfigError(f"{where}: needs {missing}, which no earlier run provides")
        for out in run.provides:
            if out in provided:
                raise ConfigError(f"{where}: {out!r} is already provided by {provided[out]!r}")
            provided[out] = name
        runs.append(run)
    names = [name for name, _ in lines]
    if text and names != list(doc["runs"]):  # the Makefile reads the names off these lines
        raise ConfigError(f"{source}: write each run as a line `  <name>:` (two spaces, under "
                          f"`runs:`; the Makefile reads them): found {names}, the runs are "
                          f"{list(doc['runs'])}")
    roles = [r.role for r in runs if r.role]
    if len(roles) != len(set(roles)):
        raise ConfigError(f"{source}: a role is held by more than one run ({roles})")
    return Chain(runs, source)


def load_chain(config_dir: str | os.PathLike[str] | None = None) -> Chain:
    """The chain of the first ``chain.yaml`` in the config folders."""
    path = find_config(CHAIN_FILE, config_dir)
    if path is None:
        raise ConfigError(f"no {CHAIN_FILE} in the config folders (it declares the runs of "
                          "`make all`)")
    return parse_chain(read_yaml(path, "a mapping with 'runs'"), str(path),
                       path.read_text(encoding="utf-8"))


def image_only_run(name: str = "") -> str:
    """``name``, or (when empty) the chain's image-only run: the default of every consumer that
    scores crops without metadata (Grad-CAM, report, app, predict-images)."""
    return name or load_chain().role("image_only")
