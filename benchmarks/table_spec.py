"""What a table of BENCHMARKS.md is (:class:`Table`) and the row of a paired claim.

``page_tables.py`` (quality and claims) and ``page_tables_scale.py`` (run time, memory, loader,
full size) hold the tables; ``render.py`` turns each into markdown.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A markdown table whose cells are templates over one results file."""

    source: str
    script: str
    header: list[str]
    rows: list[list[str]]
    each: str | None = None


CLAIM_HEADER = ["claim: B vs A", "paired fold seeds", "mean OOF pAUC A / B",
                "B − A, pooled OOF [95% patient-bootstrap CI]",
                "B − A, per fold [95% corrected-t CI]", "p (bootstrap / corrected t)", "verdict",
                "recorded conditions (A's; B's equal in the keys `isic compare` checked)"]


def claim_row(label: str, path: str) -> list[str]:
    """One ``isic compare`` result (``evaluation/paired.py``) at ``path`` as a claims-table row."""
    cells = ["{P.n_seeds}", "{P.mean_oof_pauc_a:.4f} / {P.mean_oof_pauc_b:.4f}",
             "**{P.bootstrap.pooled_oof_diff:+.4f}** [{P.bootstrap.ci.0:+.4f}, "
             "{P.bootstrap.ci.1:+.4f}]",
             "{P.corrected_t.mean_fold_diff:+.4f} [{P.corrected_t.ci.0:+.4f}, "
             "{P.corrected_t.ci.1:+.4f}]",
             "{P.bootstrap.p_value:.2g} / {P.corrected_t.p_value:.2g}", "**{P.verdict}**",
             "{P.conditions_text}"]
    return [label, *(c.replace("{P.", "{" + path + ".") for c in cells)]
