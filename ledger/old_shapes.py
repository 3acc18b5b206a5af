"""The ``metrics.json`` shapes of before :class:`~isicstack.ledger.result.RunResult`, read into
its one shape, so run folders and Kaggle packages written then still read (fold list, scores).

Each stage wrote its own: tabular, the pooled scores at the top (``oof_pauc``, ``fold_pauc``
{fold: v}, ``model``, ``rows``); image, ``oof`` {pauc, auc, n, n_pos} and ``folds`` {fold: the
fold's record}; stack, its own CV under ``stack`` beside ``methods``, ``inputs``, ``cv`` ...;
calibrate, ``models`` {name: Brier / log loss}. What the one shape has no field for is kept in
``details`` under its old key, as the stages write it now. None of them recorded the fold hash
but the image stage: it is read from the run's ``provenance.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isicstack.data.provenance import read_provenance


def _folds(pauc: dict[str, Any] | None, auc: dict[str, Any] | None,
           seconds: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``{fold: {pauc, auc, seconds}}`` from per-fold mappings of one figure each."""
    auc, seconds = auc or {}, seconds or {}
    return {str(k): {"pauc": v, "auc": auc.get(k), "seconds": seconds.get(k)}
            for k, v in (pauc or {}).items()}


def _rest(doc: dict[str, Any], used: set[str]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in used}


def _tabular(doc: dict[str, Any], name: str) -> dict[str, Any]:
    used = {"model", "rows", "positives", "oof_pauc", "oof_auc", "fold_pauc", "fold_auc",
            "fold_pauc_mean", "fold_pauc_std", "seconds", "fold_hash"}
    return {"stage": "tabular", "name": doc.get("model") or name, "pauc": doc.get("oof_pauc"),
            "auc": doc.get("oof_auc"), "n": doc.get("rows") or 0,
            "n_pos": doc.get("positives") or 0,
            "folds": _folds(doc.get("fold_pauc"), doc.get("fold_auc")),
            "seconds": doc.get("seconds"), "details": _rest(doc, used)}


def _image(doc: dict[str, Any], name: str) -> dict[str, Any]:
    oof, records = doc["oof"], doc.get("folds") or {}
    used = {"name", "oof", "folds", "seconds", "fold_hash", "mean_fold_pauc"}
    return {"stage": "image", "name": doc.get("name") or name, "pauc": oof.get("pauc"),
            "auc": oof.get("auc"), "n": oof.get("n") or 0, "n_pos": oof.get("n_pos") or 0,
            "folds": {str(k): {"pauc": f.get("pauc"), "auc": f.get("auc"),
                               "seconds": f.get("seconds")} for k, f in records.items()},
            "seconds": doc.get("seconds"),
            "details": {**_rest(doc, used), "fold_records": records}}


def _stack(doc: dict[str, Any], name: str) -> dict[str, Any]:
    own = doc.get("stack") or {}
    used = {"stack", "rows", "positives", "seconds", "n_folds", "fold_hash"}
    return {"stage": "stack", "name": name, "pauc": own.get("oof_pauc"),
            "auc": own.get("oof_auc"), "n": doc.get("rows") or 0,
            "n_pos": doc.get("positives") or 0,
            "folds": _folds(own.get("fold_pauc"), own.get("fold_auc")),
            "seconds": doc.get("seconds"), "details": _rest(doc, used)}


def _calibrate(doc: dict[str, Any], name: str) -> dict[str, Any]:
    used = {"rows", "positives", "seconds", "fold_hash"}
    return {"stage": "calibrate", "name": name, "pauc": None, "auc": None,
            "n": doc.get("rows") or 0, "n_pos": doc.get("positives") or 0, "folds": {},
            "seconds": doc.get("seconds"), "details": _rest(doc, used)}


def upgrade(doc: dict[str, Any], folder: Path, where: str) -> dict[str, Any]:
    """``doc``, a ``metrics.json`` of before read from ``folder``, in the one shape (all but
    its ``format``); a ValueError naming ``where`` when it is none of them."""
    if isinstance(doc.get("stack"), dict) or "chosen" in doc:
        out = _stack(doc, folder.name)
    elif isinstance(doc.get("oof"), dict):
        out = _image(doc, folder.name)
    elif "oof_pauc" in doc:
        out = _tabular(doc, folder.name)
    elif "models" in doc and "prior" in doc:
        out = _calibrate(doc, folder.name)
    else:
        raise ValueError(f"{where}: not a run's metrics.json: no 'format' key and none of the "
                         f"shapes of before (keys: {', '.join(sorted(doc)[:10])})")
    out["fold_hash"] = doc.get("fold_hash") or read_provenance(folder).get("fold_hash")
    return out
