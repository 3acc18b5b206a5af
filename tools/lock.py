"""Write ``requirements.lock``: the exact versions of the project's dependency closure.

Usage (in a venv where ``make setup`` installed the project)::

    .venv/bin/python tools/lock.py            # rewrite requirements.lock
    .venv/bin/python tools/lock.py --check    # exit 1 if the lock misses a declared dependency

The closure starts from ``pyproject.toml`` (dependencies and every extra) and follows each
installed distribution's requirements whose markers hold here (Linux, CPython 3.11), so the lock
pins exactly what this venv runs. ``make setup`` installs with ``-c requirements.lock``: CI and
users get the same versions. Regenerate after changing dependencies (``make lock``).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
SELF = "isicstack"


def declared(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The project's requirements and every extra's, self-references expanded."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra if canonicalize_name(Requirement(r).name) != SELF]
    return reqs


def closure(roots: list[Requirement]) -> dict[str, str]:
    """``{name: version}`` of every installed distribution the roots need here."""
    pins: dict[str, str] = {}
    stack = [(r, frozenset(r.extras)) for r in roots]
    while stack:
        req, extras = stack.pop()
        name = canonicalize_name(req.name)
        if name in pins and not extras:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError as err:
            raise SystemExit(f"{req.name} is not installed here: run `make setup` first") from err
        pins[name] = dist.version.split("+")[0]  # PyPI has no local versions (+cu130)
        for raw in dist.requires or []:
            sub = Requirement(raw)
            envs = [{"extra": e} for e in ("", *extras)]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                stack.append((sub, frozenset(sub.extras)))
    return dict(sorted(pins.items()))


def render(pins: dict[str, str]) -> str:
    head = ("# Exact versions of isicstack's dependencies and extras (Linux, CPython 3.11),\n"
            "# written by tools/lock.py from the venv; `make setup` installs with -c this file.\n")
    return head + "".join(f"{n}=={v}\n" for n, v in pins.items())


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """``{name: version}`` of a lock file."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line.strip())
        if m:
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    if args.check:
        pins = read_lock()
        bad = [str(r) for r in declared() if canonicalize_name(r.name) not in pins
               or not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
        if bad:
            print(f"{LOCK.name} does not satisfy: {', '.join(bad)}; run tools/lock.py",
                  file=sys.stderr)
            return 1
        return 0
    LOCK.write_text(render(closure(declared())), encoding="utf-8")
    print(f"wrote {LOCK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
