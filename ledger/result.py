"""What a stage run produced, one shape for every stage: :class:`RunResult`, the contents of
its ``metrics.json``.

Why: the tabular, image and stack stages each wrote their own ``metrics.json`` (``oof_pauc`` at
the top; ``oof.pauc`` and ``folds.<k>``; ``stack.*``), so every reader (the ledger, the fold
list ``isic predict`` loads, the report, the benchmarks) branched on which stage wrote it. Now
each stage builds one :class:`RunResult`: the pooled OOF scores, the scores per fold, the time,
the fold hash it trained on, and ``details``, what only that stage has (the stack's methods, an
image run's timings, a GBDT's feature count). The input files by content stay in
``provenance.json``, not repeated here. :func:`read_result` reads this shape and the three of
before (:mod:`isicstack.ledger.old_shapes`), so old run folders and Kaggle packages still read.

The convention of a stage's ``run(cfg)``: a stage that writes run folders (``train-tabular``,
``train-image``, ``stack``, ``calibrate``) returns ``list[RunResult]``, one per folder written,
in the order written: one per model for the tabular stage, none on a DDP rank other than 0
(it writes nothing). Each is the result as read back from its ``metrics.json``: keys inside
``details`` are JSON's strings, as every later reader sees them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from isicstack.data.io import read_json_object
from isicstack.data.metric import mean_std
from isicstack.ledger.old_shapes import upgrade

METRICS = "metrics.json"
FORMAT = 1  # metrics.json's "format"; a file without one is a shape of before (old_shapes)
POOLED_PAUC = "oof_pauc"  # the ledger's name of the pooled OOF pAUC (`isic runs` shows it)


@dataclass(frozen=True)
class FoldScore:
    """One held-out fold: its pAUC and AUC (None: the fold lacks a class), its time if timed."""

    pauc: float | None
    auc: float | None
    seconds: float | None = None


@dataclass(frozen=True)
class RunResult:
    """One run folder's result; ``details`` holds what only its stage has."""

    stage: str  # tabular | image | stack | calibrate
    name: str  # the run folder (a model's OOF file has the same name)
    pauc: float | None  # pooled over every OOF row; None when the run scores no OOF (calibrate)
    auc: float | None
    n: int  # OOF rows
    n_pos: int  # positives among them
    folds: dict[int, FoldScore] = field(default_factory=dict)  # the folds trained, by id
    seconds: float | None = None  # the run's wall time (None until finish_run measures it)
    fold_hash: str | None = None  # the fold assignment it trained on (data.provenance)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fold_pauc_mean(self) -> float | None:
        """Mean of the defined fold pAUCs (a fold without both classes is left out)."""
        return mean_std([f.pauc for f in self.folds.values()])[0]

    @property
    def fold_pauc_std(self) -> float | None:
        """Std of the defined fold pAUCs."""
        return mean_std([f.pauc for f in self.folds.values()])[1]

    def to_dict(self) -> dict[str, Any]:
        """What ``metrics.json`` holds: one shape for every stage, with its ``format``."""
        return {"format": FORMAT, "stage": self.stage, "name": self.name, "pauc": self.pauc,
                "auc": self.auc, "n": self.n, "n_pos": self.n_pos,
                "folds": {str(k): asdict(f) for k, f in sorted(self.folds.items())},
                "seconds": self.seconds, "fold_hash": self.fold_hash, "details": self.details}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = METRICS) -> RunResult:
        """The result :meth:`to_dict` wrote; ``where`` names the file in errors."""
        if doc.get("format") != FORMAT:
            raise ValueError(f"{where}: metrics.json format {doc.get('format')!r}; this version "
                             f"reads format {FORMAT} and the shapes of before it")
        try:
            folds = {int(k): FoldScore(f.get("pauc"), f.get("auc"), f.get("seconds"))
                     for k, f in doc["folds"].items()}
            return cls(str(doc["stage"]), str(doc["name"]), doc["pauc"], doc["auc"],
                       int(doc["n"]), int(doc["n_pos"]), dict(sorted(folds.items())),
                       doc.get("seconds"), doc.get("fold_hash"), dict(doc.get("details") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{where}: not a run result ({type(err).__name__}: {err})") from err

    def ledger_metrics(self) -> dict[str, Any]:
        """The numbers the ledger logs: ``oof_pauc``, ``oof_auc``, ``fold_pauc`` {fold: v}, ...
        and every number in ``details`` (nested keys are dotted by the ledger)."""
        core = {POOLED_PAUC: self.pauc, "oof_auc": self.auc, "n": self.n, "n_pos": self.n_pos,
                "seconds": self.seconds, "fold_pauc_mean": self.fold_pauc_mean,
                "fold_pauc_std": self.fold_pauc_std,
                "fold_pauc": {k: f.pauc for k, f in self.folds.items()},
                "fold_auc": {k: f.auc for k, f in self.folds.items()},
                "fold_seconds": {k: f.seconds for k, f in self.folds.items()}}
        return {**self.details, **core}


def fold_scores_of(fold_pauc: Mapping[Any, float | None], fold_auc: Mapping[Any, float | None],
                   seconds: Mapping[Any, float | None] | None = None) -> dict[int, FoldScore]:
    """Per-fold scores from the ``{fold: pauc}`` / ``{fold: auc}`` mappings the stages compute
    (:func:`~isicstack.data.metric.fold_summary`), keyed by int fold id."""
    return {int(k): FoldScore(v, fold_auc.get(k), (seconds or {}).get(k))
            for k, v in fold_pauc.items()}


def read_result(folder: str | os.PathLike[str]) -> RunResult:
    """The result of the run in ``folder``: its ``metrics.json``, of this shape or one of the
    three of before (then the fold hash comes from ``provenance.json`` if the file has none)."""
    path = Path(folder) / METRICS
    doc = read_json_object(path, "the run's results (metrics.json) not found; copy the whole "
                           "run folder or rerun the stage that writes it")
    if "format" in doc:
        return RunResult.from_dict(doc, str(path))
    return RunResult.from_dict({**upgrade(doc, Path(folder), str(path)), "format": FORMAT},
                               str(path))


def trained_folds(rdir: str | os.PathLike[str]) -> list[int]:
    """Fold ids the run trained (its result's per-fold entries): the fold models to load."""
    folds = sorted(read_result(rdir).folds)
    if not folds:
        raise ValueError(f"{Path(rdir) / METRICS}: no per-fold entries; the run trained no fold")
    return folds
