"""How a report section says it has nothing to show: ``{"skipped": reason}``.

One key in ``report.json`` for every section (drift, oracle, calibration, subgroups, per-centre
CV, Grad-CAM), rendered one way in ``report.md`` by :func:`skipped_lines`: the section's title,
then ``Skipped: <reason>``. The sections used to say it two ways (``note`` and ``skipped``), each
rendered its own way. What a shown section leaves out (a model whose file does not match, a
column the data lacks) is its ``left_out`` {name: why}, rendered by :func:`left_out_lines`.
This sits in the kernel because the sections live in two rooms (evaluation, explain) that do
not import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SKIPPED = "skipped"


def skipped(reason: str, **context: Any) -> dict[str, Any]:
    """A section that shows nothing, and why; ``context``: what it looked at (a path ...)."""
    return {**context, SKIPPED: reason}


def skipped_lines(title: str, section: Mapping[str, Any]) -> list[str] | None:
    """The report lines of a skipped section (its title and why), None when it was not."""
    if SKIPPED not in section:
        return None
    return [f"\n## {title}\n", f"Skipped: {section[SKIPPED]}"]


def left_out_lines(left_out: Mapping[str, str]) -> list[str]:
    """The report lines of what a section left out (a model, a column), each with why: the
    other way a section shows less than asked, one line per item."""
    return [f"\n`{name}` left out: {why}" for name, why in left_out.items()]
