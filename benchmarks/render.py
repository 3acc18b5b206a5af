"""Write the tables of BENCHMARKS.md from ``benchmarks/results/*.json`` (never by hand).

Usage::

    python benchmarks/render.py            # rewrite the tables in BENCHMARKS.md
    python benchmarks/render.py --check    # exit 1 if BENCHMARKS.md disagrees with the results

Each generated table sits between two marker lines in BENCHMARKS.md::

    <!-- table:NAME -->
    | ... generated ... |
    <!-- /table:NAME -->

and everything between them is replaced by the rendering of ``TABLES[NAME]``. Text outside the
markers is left alone. ``tests/test_benchmarks.py`` runs ``--check``, so a results file and the
page cannot drift apart.

How to add a table:

1. make a benchmark script write its figures to ``benchmarks/results/<file>.json``
   (``isicstack.data.io.write_json``);
2. add a :class:`Table` to ``TABLES`` in ``page_tables.py`` (run time and size:
   ``page_tables_scale.py``): its results ``source`` file, the ``script`` that writes it
   (the command of ``plan.py``; shown when the file is missing), the ``header`` cells, and
   ``rows``, each a list of cells. A cell is a template: plain text,
   with ``{dotted.path}`` or ``{dotted.path:spec}`` fields looked up in the JSON (``a.ci.0``
   is a list's first item; ``spec`` is a Python format spec, or ``dur`` for "3 min 52 s",
   ``pct`` for a fraction as "77.3%", ``int`` for "1,234", ``cond`` for a recorded
   ``conditions`` block in one line; a path ending in ``?`` may be missing from an older file:
   ``{conditions?:cond}`` reads "conditions not recorded" there). With ``each="a.b"`` the table has
   one row per entry of that mapping, built from ``rows[0]``: ``{@key}`` is the entry's key and
   ``{@.field}`` a field of the entry (e.g. one row per model);
3. put the two marker lines where the table goes in BENCHMARKS.md and run this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from isicstack.conditions import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "BENCHMARKS.md"
FIELD = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)",
                   re.S)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded by path
import page_tables  # noqa: E402
import page_tables_scale  # noqa: E402
import page_tables_service  # noqa: E402
from table_spec import Table  # noqa: E402

TABLES: dict[str, Table] = {**page_tables.TABLES, **page_tables_scale.TABLES,
                            **page_tables_service.TABLES}


def lookup(data: Any, path: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"`` (``"ci.0"``: a list's item); a KeyError names the
    whole path."""
    node = data
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f"no {path!r} in the results file (missing {part!r})")
    return node


def fmt(value: Any, spec: str | None) -> str:
    """Format one figure: a Python format spec or one of ``dur``, ``pct``, ``int``, ``cond``."""
    if spec == "cond":  # a run's recorded conditions (None: the file records none)
        return describe(value)
    if value is None:  # e.g. the sd of a figure measured on one seed only (data/metric.py)
        return "n/a"
    if spec == "dur":
        minutes, seconds = divmod(round(float(value)), 60)
        if minutes >= 60:
            return f"{minutes // 60} h {minutes % 60} min"
        return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    if spec == "pct":
        return f"{100 * float(value):.1f}%"
    if spec == "int":
        return f"{round(float(value)):,}"
    return format(value, spec) if spec else str(value)


def field(data: Any, path: str) -> Any:
    """:func:`lookup`, except that a path ending in ``?`` is None where the file lacks it."""
    if not path.endswith("?"):
        return lookup(data, path)
    try:
        return lookup(data, path[:-1])
    except KeyError:
        return None


def cell(template: str, data: Any) -> str:
    return FIELD.sub(lambda m: fmt(field(data, m.group(1)), m.group(2)), template)


def render(table: Table, results: Path = RESULTS) -> str:
    """The markdown of ``table`` (a one-line note when its results file does not exist yet)."""
    path = results / table.source
    if not path.is_file():
        return f"*Not measured yet: run `{table.script}` (writes `benchmarks/results/" \
               f"{table.source}`), then `python benchmarks/render.py`.*\n"
    data = json.loads(path.read_text(encoding="utf-8"))
    contexts = [data]
    if table.each is not None:
        items = lookup(data, table.each)
        contexts = [{**data, "@": item, "@key": key} for key, item in items.items()]
    try:
        lines = ["| " + " | ".join(cell(c, data) for c in table.header) + " |",
                 "|" + "---|" * len(table.header)]
        rows = table.rows[:1] if table.each is not None else table.rows
        for ctx in contexts:
            for row in rows:
                lines.append("| " + " | ".join(cell(c, ctx) for c in row) + " |")
    except KeyError as err:
        raise KeyError(f"{path}: {err.args[0]}") from err
    return "\n".join(lines) + "\n"


def update(text: str, tables: dict[str, Table], results: Path = RESULTS) -> str:
    """``text`` with every marked table regenerated; unknown or missing markers are errors."""
    seen: set[str] = set()

    def repl(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in tables:
            raise KeyError(f"BENCHMARKS.md marks a table {name!r} that render.py does not define")
        seen.add(name)
        return m.group(1) + render(tables[name], results) + m.group(4)

    out = BLOCK.sub(repl, text)
    missing = sorted(set(tables) - seen)
    if missing:
        raise KeyError(f"BENCHMARKS.md has no markers for table(s) {', '.join(missing)}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if BENCHMARKS.md is stale")
    args = ap.parse_args(argv)
    text = PAGE.read_text(encoding="utf-8")
    new = update(text, TABLES)
    if args.check:
        if new != text:
            print("BENCHMARKS.md disagrees with benchmarks/results/*.json: "
                  "run `python benchmarks/render.py`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        from isicstack.data.io import write_text

        write_text(new, PAGE)
        print(f"updated {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
