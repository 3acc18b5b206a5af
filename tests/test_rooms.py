"""The README's room table is the tree: every room (a sub-package or a top-level module of the
package) is in it once, nothing else is, and each row's layer is the one the import contract
gives the room (``pyproject.toml``, checked by tests/test_dependencies.py).

A maintainer reads the table to know where a concept lives; a room added, renamed or moved
between layers without the table changing fails here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- table:rooms -->\n(.*?)<!-- /table:rooms -->", re.S)
ROW = re.compile(r"^\| (\w+) \| `([\w.]+)` \| .+ \|$")
LAYERS = ("interfaces", "commands", "stages", "kernel")  # the first contract's, top down


def readme_rooms() -> dict[str, str]:
    """``{room: layer}`` from the README's table (a room written ``name`` or ``name.py``)."""
    m = BLOCK.search((REPO / "README.md").read_text(encoding="utf-8"))
    assert m, "README.md has no <!-- table:rooms --> block"
    rows = [ln for ln in m.group(1).splitlines() if ln.startswith("| ") and "---" not in ln]
    found: dict[str, str] = {}
    for ln in rows[1:]:  # the header row first
        parsed = ROW.match(ln)
        assert parsed, f"README room table: unreadable row {ln!r}"
        layer, room = parsed.groups()
        room = room.removesuffix(".py")
        assert room not in found, f"README room table: {room} listed twice"
        found[room] = layer
    return found


def tree_rooms() -> set[str]:
    """Sub-packages of the package (folders with ``__init__.py``) and its top-level modules."""
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in REPO.glob("*.py") if p.name != "__init__.py"}
    return packages | modules


def contract_layers() -> dict[str, str]:
    """``{room: layer name}`` from the first import contract of ``pyproject.toml``."""
    doc = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contract = doc["tool"]["importlinter"]["contracts"][0]
    assert len(contract["layers"]) == len(LAYERS), contract["name"]
    out = {}
    for name, layer in zip(LAYERS, contract["layers"], strict=True):
        for room in re.split(r"[|:]", layer):
            out[room.strip().removeprefix("isicstack.")] = name
    return out


def test_readme_room_table_is_the_tree():
    rooms = readme_rooms()
    tree = tree_rooms()
    assert set(rooms) == tree, {"missing from README": sorted(tree - set(rooms)),
                                "not in the tree": sorted(set(rooms) - tree)}


def test_readme_room_layers_are_the_contracts():
    rooms, layers = readme_rooms(), contract_layers()
    assert set(layers) == set(rooms), sorted(set(layers) ^ set(rooms))
    wrong = {r: (rooms[r], layers[r]) for r in rooms if rooms[r] != layers[r]}
    assert not wrong, f"room: (README, pyproject): {wrong}"

