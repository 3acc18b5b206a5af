"""How far a lesion's score moves when it is scored alone, as the web app scores an upload,
instead of inside its real patient: held-out test lesions of the synthetic default.

The saved models of a ``bench_pipeline.py`` chain (read only) score every test lesion three
ways through the ``isic predict`` path: inside its patient (all columns), alone (a one-lesion
patient, all columns) and alone with only the app's form fields (every other column null, what
an upload with metadata is). Per model and for the submitted stack: the shift of the score and
of the calibrated risk (maps fitted by ``isic calibrate`` into a temporary folder), how many
lesions cross the review threshold (picked on the OOF scores at sensitivity 0.8), and the test
pAUC each way with a patient-bootstrap interval of the difference. The app cites the summary.
Writes ``benchmarks/results/single_lesion.json`` with the conditions of the scoring
(``isicstack.conditions.run_conditions``) and the load average at its start and end.

    python benchmarks/bench_single_lesion.py [--chain artifacts/bench_pipeline/seed0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isicstack.conditions import run_conditions
from isicstack.data.io import load_metadata, write_json
from isicstack.data.layout import ORACLE, TEST_IMAGES, TEST_META

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("inside", "alone", "alone_form")


def score(test: pl.DataFrame, stacker: Any, predictors: list[Any]) -> dict[str, np.ndarray]:
    """Every level-1 score and the stack's, through the predict path."""
    from isicstack.inference.predict import score_all

    scores, _, _ = score_all(test, predictors, 50_000)
    if stacker is not None:
        scores["stack"] = stacker.predict(np.column_stack([scores[n] for n in stacker.inputs]))
    return scores


def precision(predictors: list[Any]) -> str:
    """How the image models scored (each as it trained: bf16 autocast where it did); the GBDTs
    score in float32."""
    bf16 = any(str(getattr(p, "autocast", None)) == "torch.bfloat16" for p in predictors)
    return "bf16-mixed" if bf16 else "32-true"


def variants(test: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The three ways a lesion is handed to the models."""
    from isicstack.app.validate import FIELDS

    alone = test.with_columns(patient_id=pl.col("isic_id"))
    keep = {"isic_id", "patient_id", *(f.name for f in FIELDS)}
    form = alone.with_columns([pl.lit(None, dtype=test.schema[c]).alias(c)
                               for c in test.columns if c not in keep])
    return {"inside": test, "alone": alone, "alone_form": form}


def maps(chain: str, data: str, names: list[str]) -> dict[str, Any]:
    """Calibration maps of ``names`` fitted on the chain's OOF scores (written to a temp dir)."""
    from isicstack.calibration.maps import CalMap
    from isicstack.evaluation.calibrate import run
    from isicstack.evaluation.config import CalibrateConfig

    with tempfile.TemporaryDirectory() as tmp:
        run(CalibrateConfig(artifacts=chain, data_dir=data, out=tmp, n_boot=0, models=names))
        return {n: CalMap.from_dict(json.loads((Path(tmp) / f"{n}.json").read_text())["map"])
                for n in names}


def thresholds(chain: str, names: list[str]) -> dict[str, float]:
    """Each model's review threshold on its inference scale (OOF, sensitivity 0.8)."""
    from isicstack.calibration.operating_point import threshold_at_tpr
    from isicstack.calibration.scores import model_scores
    from isicstack.data.folds import read_folds

    folds = read_folds(chain)
    y = folds["target"].to_numpy()
    return {n: threshold_at_tpr(y, model_scores(chain, n, folds), 0.8) for n in names}


def pauc_diff(y: np.ndarray, a: np.ndarray, b: np.ndarray, patients: np.ndarray,
              n_boot: int) -> dict[str, Any]:
    """Test pAUC of a and b, and a patient-bootstrap interval of b - a."""
    from isicstack.evaluation.paired import patient_draws, weighted_pauc

    counts, codes = patient_draws(patients, n_boot, 0)
    w = counts[:, codes]
    d = weighted_pauc(y, b, w) - weighted_pauc(y, a, w)
    d = d[np.isfinite(d)]
    one = np.ones((1, y.size))
    return {"a": float(weighted_pauc(y, a, one)[0]), "b": float(weighted_pauc(y, b, one)[0]),
            "diff_ci": [float(v) for v in np.quantile(d, [0.025, 0.975])]}


def shift(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Median, 90th percentile and max of |b - a|."""
    d = np.abs(b - a)
    return {"abs_median": float(np.median(d)), "abs_p90": float(np.quantile(d, 0.9)),
            "abs_max": float(d.max())}


def compare(name: str, got: dict[str, dict[str, np.ndarray]], cal: Any, thr: float | None,
            y: np.ndarray, patients: np.ndarray, n_boot: int) -> dict[str, Any]:
    """One model: the shift of each alone-way from inside, on score and risk."""
    inside = got["inside"][name]
    out: dict[str, Any] = {}
    for way in WAYS[1:]:
        other = got[way][name]
        row: dict[str, Any] = {"score": shift(inside, other)}
        if cal is not None:
            ri, ro = cal.apply(inside), cal.apply(other)
            row["risk"] = shift(ri, ro)
            row["risk_log_ratio_median"] = float(np.median(np.log(ro / ri)))
        if thr is not None:
            row["flag_changed"] = float(np.mean((inside >= thr) != (other >= thr)))
        if 0 < y.sum() < y.size:
            row["test_pauc"] = pauc_diff(y, inside, other, patients, n_boot)
        out[way] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chain", default="artifacts/bench_pipeline/seed0")
    ap.add_argument("--data", default="datasets/synthetic/default")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "single_lesion.json"))
    args = ap.parse_args()
    os.chdir(ROOT)  # chain and data are named relative to the repository root
    from isicstack.inference.config import PredictConfig
    from isicstack.inference.predict import resolve_models

    pcfg = PredictConfig(data_dir=args.data, artifacts=args.chain, accelerator="cpu",
                         num_workers=0, cpu_threads=1)
    stacker, final, predictors = resolve_models(pcfg, Path(args.data) / TEST_IMAGES)
    test = load_metadata(Path(args.data) / TEST_META, "test")
    load_start, t0 = os.getloadavg(), time.perf_counter()
    got = {way: score(rows, stacker, predictors) for way, rows in variants(test).items()}
    seconds = round(time.perf_counter() - t0, 1)
    names = list(got["inside"])
    oracle = test.select("isic_id").join(pl.read_parquet(Path(args.data) / ORACLE),
                                         on="isic_id", how="left", maintain_order="left")
    y = oracle["target"].fill_null(0).to_numpy().astype(np.int64)
    patients = test["patient_id"].to_numpy()
    cals, thrs = maps(args.chain, args.data, names), thresholds(args.chain, names)
    models = {n: compare(n, got, cals.get(n), thrs.get(n), y, patients, args.n_boot)
              for n in names}
    sub = "stack" if stacker is not None else final[0]
    alone = models[sub]["alone"]
    result = {"chain": args.chain, "data": args.data, "rows": test.height,
              "patients": int(test["patient_id"].n_unique()), "positives": int(y.sum()),
              "submitted": sub, "seconds": seconds, "models": models,
              "conditions": run_conditions(pcfg.cpu_threads, pcfg.num_workers,
                                           precision(predictors), stage="predict"),
              "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
              "summary": {"data": "synthetic", "lesions": test.height, "model": sub,
                          "risk_abs_median": alone["risk"]["abs_median"],
                          "risk_abs_p90": alone["risk"]["abs_p90"],
                          "score_abs_median": alone["score"]["abs_median"],
                          "flag_changed": alone["flag_changed"],
                          "form_only_flag_changed": models[sub]["alone_form"]["flag_changed"],
                          "form_only_risk_abs_median":
                              models[sub]["alone_form"]["risk"]["abs_median"],
                          "test_pauc_inside": alone["test_pauc"]["a"],
                          "test_pauc_alone": alone["test_pauc"]["b"],
                          "test_pauc_diff_ci": alone["test_pauc"]["diff_ci"]}}
    write_json(result, args.out)
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
