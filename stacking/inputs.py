"""Level-1 predictions read back from ``artifacts/``, aligned row by row to the shared folds.

Every OOF file must cover exactly the fold rows with the same fold: an OOF file made with other
folds (or other data) would leak training rows into the level-2 CV and inflate it silently.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import polars as pl

from isicstack.data import predictions
from isicstack.data.layout import IMAGE_PART_SUFFIX, oof_path, test_pred_path

log = logging.getLogger(__name__)

STACK_PREFIX = "stack"


def discover(artifacts: str | os.PathLike[str], include_stack: bool = False,
             include_parts: bool = False) -> list[str]:
    """Sorted names of the OOF files in ``artifacts/oof``. Left out by default: level-2 outputs,
    and a fused image run's image term alone (``*_image_part``), a second-pass GBDT feature that
    scores only what the table leaves unexplained (as a stack input it lowered the stack's
    pAUC on the synthetic default). Name it in the stack's ``inputs`` to use it anyway."""
    folder = oof_path(artifacts, "x").parent
    names = sorted(p.stem for p in folder.glob("*.parquet"))
    return [n for n in names if (include_stack or not n.startswith(STACK_PREFIX))
            and (include_parts or not n.endswith(IMAGE_PART_SUFFIX))]


def load_oof(artifacts: str | os.PathLike[str], name: str, folds: pl.DataFrame) -> np.ndarray:
    """OOF scores of ``name`` in ``folds`` row order; same ids and same fold, or a DataError."""
    return predictions.load_oof(oof_path(artifacts, name), folds,
                                f"run the stage that writes {name!r}")


def load_test(artifacts: str | os.PathLike[str], name: str, ids: pl.Series) -> np.ndarray:
    """Test scores of ``name`` in ``ids`` order; every test id must be present exactly once."""
    return predictions.load_test(test_pred_path(artifacts, name), ids,
                                 f"run the stage that writes {name!r}", exact=True)
