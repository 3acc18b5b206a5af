"""Feature groups selected by name, built into one train and one test matrix.

Groups live in a registry (``GROUPS``, one builder per name of ``config.GROUP_NAMES``) so a
config picks them by name; adding a group is its name there, one function and one registry entry
here, never a version branch. Only test-file columns are read
(the input frames are narrowed to them first), and per-patient statistics are computed on each
split separately, as in the competition.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from isicstack.data.folds import read_folds
from isicstack.data.layout import test_pred_path
from isicstack.data.provenance import fold_hash
from isicstack.data.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TEST_COLUMNS
from isicstack.features import categorical, oof, patient
from isicstack.features.config import GROUP_NAMES, FeatureConfig, validate
from isicstack.features.lesion import LESION_FEATURES, RAW_FEATURES, base_frame, finite

log = logging.getLogger(__name__)

VALID_NAME = re.compile(r"^[A-Za-z0-9_]+$")
INPUT_COLUMNS: tuple[str, ...] = ("isic_id", "patient_id", *NUMERIC_FEATURES,
                                  *CATEGORICAL_FEATURES)
assert set(INPUT_COLUMNS) <= set(TEST_COLUMNS)


@dataclass
class FeatureSet:
    """Row-aligned feature matrices and the column roles a GBDT needs."""

    train: pl.DataFrame
    test: pl.DataFrame | None
    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    # fold hash (data/provenance.py) of the folds the 'oof' scores were made on: valid only there
    oof_folds: str | None = None

    @property
    def names(self) -> list[str]:
        """Numeric then categorical: the model's column order."""
        return [*self.numeric, *self.categorical]


@dataclass
class Block:
    """New columns of one group for each split (row-aligned with the inputs)."""

    train: pl.DataFrame
    test: pl.DataFrame | None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)


class _Job:
    """Inputs of one build plus the per-split pass that the row-wise groups share."""

    def __init__(self, train: pl.DataFrame, test: pl.DataFrame | None, cfg: FeatureConfig,
                 artifacts: Path) -> None:
        self.train, self.test, self.cfg, self.artifacts = train, test, cfg, artifacts
        self.contexts = patient.check_contexts(cfg.patient_contexts)
        base = [*(RAW_FEATURES if "raw" in cfg.groups else ()),
                *(LESION_FEATURES if "lesion" in cfg.groups else ())]
        self.zcols: list[str] = base or list(RAW_FEATURES)
        self._rowwise: dict[str, pl.DataFrame] = {}
        # test-only mode (offline inference): the "train" slot holds the test rows, categories
        # come from the training run and oof scores from ``preds`` or ``artifacts/test/``
        self.fitted_categories: dict[str, list[str]] | None = None
        self.preds: dict[str, pl.DataFrame] | None = None
        self.test_only = False

    def names(self, group: str) -> list[str]:
        """Output columns of a row-wise group."""
        if group == "raw":
            return list(RAW_FEATURES)
        if group == "lesion":
            return list(LESION_FEATURES)
        if group == "patient":
            return patient.patient_names(self.zcols, self.contexts, self.cfg.patient_rank)
        return patient.ugly_duckling_names(self.contexts)

    def rowwise(self, split: str) -> pl.DataFrame | None:
        """Every selected row-wise group of ``split`` in one lazy pass (computed once)."""
        df = self.train if split == "train" else self.test
        if df is None:
            return None
        if split not in self._rowwise:
            self._rowwise[split] = self._pass(df)
        return self._rowwise[split]

    def _pass(self, df: pl.DataFrame) -> pl.DataFrame:
        g, cfg = self.cfg.groups, self.cfg
        lf = base_frame(df.lazy())
        out: list[pl.Expr] = []
        for name in ("raw", "lesion"):
            if name in g:
                out += [finite(pl.col(c).cast(pl.Float32)).alias(c) for c in self.names(name)]
        if "patient" in g or "ugly_duckling" in g:
            lf = patient.add_keys(lf, self.contexts)
            ctx = [*patient.zscore_exprs(self.zcols, self.contexts)]
            if "patient" in g:
                if cfg.patient_rank:
                    ctx += patient.rank_exprs(self.zcols)
                ctx += patient.extra_exprs()
                out += [pl.col(c) for c in self.names("patient")]
            lf = lf.with_columns(ctx)
            if "ugly_duckling" in g:
                lf = lf.with_columns(patient.ugly_duckling_exprs(self.zcols, self.contexts))
                out += [pl.col(c) for c in self.names("ugly_duckling")]
        return lf.select(out).collect()


def _rowwise_group(name: str) -> Callable[[_Job], Block]:
    def build(job: _Job) -> Block:
        cols = job.names(name)
        tr = job.rowwise("train")
        te = job.rowwise("test")
        assert tr is not None
        return Block(tr.select(cols), None if te is None else te.select(cols), numeric=cols)

    build.__doc__ = f"The {name!r} group, taken from the shared per-split pass."
    return build


def _categorical(job: _Job) -> Block:
    """Int32 codes of the categoricals, mapping fitted on train only."""
    cats = job.fitted_categories
    if cats is None:
        cats = categorical.fit_categories(job.train)
    exprs = categorical.encode_exprs(cats)
    te = None if job.test is None else job.test.select(exprs)
    return Block(job.train.select(exprs), te, categorical=list(cats), categories=cats)


def _oof(job: _Job) -> Block:
    """Other stages' OOF/test scores read from ``artifacts``."""
    c = job.cfg
    if job.test_only:  # test scores, never noised (as for the test split of a training build)
        blocks, names = [], []
        for name in c.oof_names:
            path = test_pred_path(job.artifacts, name)
            preds = (job.preds or {}).get(name)
            if preds is None:
                preds = oof.read_predictions(path, name, "test")
            pred = oof.attach(job.train, preds, path, name)
            blocks.append(oof.oof_block(job.train, pred, name, c.oof_rank))
            names += oof.oof_names(name, c.oof_rank)
        return Block(pl.concat(blocks, how="horizontal"), None, numeric=names)
    tr, te, names = oof.oof_features(job.train, job.test, c.oof_names, job.artifacts,
                                     c.oof_rank, c.oof_noise_sd, c.seed)
    return Block(tr, te, numeric=names)


GROUPS: dict[str, Callable[[_Job], Block]] = {
    "raw": _rowwise_group("raw"),
    "lesion": _rowwise_group("lesion"),
    "patient": _rowwise_group("patient"),
    "ugly_duckling": _rowwise_group("ugly_duckling"),
    "categorical": _categorical,
    "oof": _oof,
}
assert tuple(GROUPS) == GROUP_NAMES  # the names a config is checked against (features/config.py)


def _narrow(df: pl.DataFrame, what: str) -> pl.DataFrame:
    """Only the test-file columns features may read, so train-only columns cannot leak in."""
    missing = [c for c in INPUT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{what} frame lacks column(s) needed for features: {missing}")
    return df.select(INPUT_COLUMNS)


def build_features(train: pl.DataFrame, test: pl.DataFrame | None, cfg: FeatureConfig,
                   artifacts: str | Path = "artifacts") -> FeatureSet:
    """Build the configured groups for train and (optionally) test.

    Returns ``isic_id`` + features in the input row order; numeric features are Float32 with
    no inf/NaN (null instead), categoricals Int32 codes (null = missing or unseen in train).
    """
    validate(cfg)
    job = _Job(_narrow(train, "train"), None if test is None else _narrow(test, "test"), cfg,
               Path(artifacts))
    blocks, numeric, cats = _run_groups(job)
    tr = _assemble([b.train for b in blocks], job.train.get_column("isic_id"), [*numeric, *cats])
    te = None
    if job.test is not None:
        te = _assemble([b.test for b in blocks if b.test is not None],
                       job.test.get_column("isic_id"), [*numeric, *cats])
    categories = {k: v for b in blocks for k, v in b.categories.items()}
    oof_folds = fold_hash(read_folds(artifacts)) if "oof" in cfg.groups else None
    return FeatureSet(tr, te, numeric, cats, categories, oof_folds)


def _run_groups(job: _Job) -> tuple[list[Block], list[str], list[str]]:
    """Every configured group of ``job``, with the numeric and categorical names checked."""
    blocks = [GROUPS[g](job) for g in job.cfg.groups]
    numeric = [c for b in blocks for c in b.numeric]
    cats = [c for b in blocks for c in b.categorical]
    names = [*numeric, *cats]
    bad = [n for n in names if not VALID_NAME.match(n)]
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if bad or dup:
        raise ValueError(f"invalid feature names {bad} or duplicated names {dup}")
    return blocks, numeric, cats


def _assemble(frames: list[pl.DataFrame], ids: pl.Series, names: list[str]) -> pl.DataFrame:
    return pl.concat([ids.to_frame(), *frames], how="horizontal").select("isic_id", *names)


def build_test_features(test: pl.DataFrame, cfg: FeatureConfig,
                        categories: dict[str, list[str]], artifacts: str | Path = "artifacts",
                        preds: dict[str, pl.DataFrame] | None = None) -> FeatureSet:
    """Test features without any train row, for offline inference from saved models.

    Per-patient statistics are per split, so test rows alone give the same values as a training
    build; ``categories`` are the train-fitted levels saved by the training run (unseen levels
    become null as before). Scores for the 'oof' group come from ``preds`` (name -> isic_id,
    pred) or else ``artifacts/test/<name>.parquet``. The result is in ``.test`` (``.train`` is
    empty), in the input row order.
    """
    validate(cfg)
    job = _Job(_narrow(test, "test"), None, cfg, Path(artifacts))
    job.fitted_categories, job.preds, job.test_only = categories, preds, True
    blocks, numeric, cats = _run_groups(job)
    te = _assemble([b.train for b in blocks], job.train.get_column("isic_id"), [*numeric, *cats])
    return FeatureSet(te.clear(), te, numeric, cats, dict(categories))
