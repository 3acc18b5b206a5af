"""Optuna sweep benchmarks on the synthetic default: gain over the untuned config, throughput.

Usage::

    python benchmarks/bench_tune.py [--parts sweep,workers,spread] [--trials 30]

- ``sweep``: a ``--trials`` LightGBM sweep (SQLite, pruning on) of the default tabular config
  with ``bags=1``; trial 0 is the untuned configuration (``enqueue_defaults``), so best vs
  untuned is measured on the same folds; wall time and trials per minute.
- ``workers``: the same sweep split over 2 worker processes sharing one PostgreSQL study
  (``--pg-url``, else ``.ci/postgres.sh`` starts a throw-away server): trials per minute.
- ``spread``: OOF pAUC of the default config over 5 fold seeds (``isic evaluate``): the noise a
  change must beat.
- ``tuned``: the sweep's best trial (chosen on fold seed 42) against the untuned config, both
  with ``bags=1`` (the sweep's setting), each ``isic evaluate``-d over fold seeds 0-4 (folds the
  sweep never chose on), compared with ``isic compare``: is tuning's gain real?
Writes ``benchmarks/results/tune.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from isicstack.data.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SWEEP = ["--profile", "default", "model=lgbm", "export=false"]


def isic(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "isicstack.pipelines.cli", *args], cwd=ROOT)


def summary(url: str, name: str, seconds: float) -> dict:
    study = optuna.load_study(study_name=name, storage=url)
    states = [t.state.name for t in study.trials]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {"trials": len(study.trials), "complete": len(done), "pruned": states.count("PRUNED"),
            "untuned_pauc": round(study.trials[0].value, 5) if study.trials[0].value else None,
            "best_pauc": round(study.best_value, 5), "best_trial": study.best_trial.number,
            "best_params": study.best_params, "wall_seconds": round(seconds, 1),
            "trials_per_min": round(len(study.trials) / seconds * 60, 2)}


def sweep(art: Path, url: str, name: str, trials: int, workers: int) -> dict:
    t = time.perf_counter()
    per = [trials // workers + (i < trials % workers) for i in range(workers)]
    # bags=1 halves a trial; several workers get one core each
    stage = "stage_overrides=[bags=1]" if workers == 1 else "stage_overrides=[bags=1,threads=1]"
    procs = [isic("tune", "tabular", *SWEEP, f"artifacts={art}", f"storage={url}",
                  f"study_name={name}", f"trials={n}", f"seed={i}", stage)
             for i, n in enumerate(per)]
    if any(p.wait() for p in procs):
        raise SystemExit("a tuning worker failed")
    return {"workers": workers, **summary(url, name, time.perf_counter() - t)}


def tuned_vs_default(art: Path, sweep: dict) -> dict:
    """The sweep's best parameters vs the untuned config over fold seeds 0-4, paired."""
    from isicstack.evaluation.config import EvaluateConfig
    from isicstack.evaluation.evaluate import compare
    from isicstack.evaluation.evaluate import run as evaluate

    tuned = [f"models.lgbm.num_rounds={v}" if k == "stage.num_rounds"
             else f"models.lgbm.params.{k}={v}" for k, v in sweep["best_params"].items()]
    common = {"artifacts": str(art), "profile": "default", "fold_seeds": [0, 1, 2, 3, 4],
              "models": ["lgbm"]}
    evaluate(EvaluateConfig(name="untuned", stage_overrides=["bags=1"], **common))
    evaluate(EvaluateConfig(name="tuned", stage_overrides=["bags=1", *tuned], **common))
    res = compare("untuned", "tuned", artifacts=art, n_boot=1000)["lgbm"]
    return {"tuned_on": "fold seed 42 (the sweep)", "best_trial": sweep["best_trial"],
            "overrides": tuned, **res}


def pg_url() -> tuple[str | None, bool]:
    """A throw-away server's URL (started by .ci/postgres.sh), or None when none can start."""
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh")], capture_output=True,
                          text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        print(f"skip workers: no PostgreSQL server could be started ({proc.stderr[-300:]!r}); "
              "pass --pg-url or set OPTUNA_TEST_POSTGRES_URL")
        return None, False
    return lines[-1], True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="sweep,workers,spread,tuned")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--worker-trials", type=int, default=10)
    parser.add_argument("--pg-url", default=os.environ.get("OPTUNA_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    path = RESULTS / "tune.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["machine"] = f"{os.cpu_count()} cores"
    stamp = time.strftime("%Y%m%d%H%M%S")
    with tempfile.TemporaryDirectory(prefix="bench_tune_") as tmp:
        art = Path(tmp)
        if isic("folds", "--profile", "default", f"artifacts={art}").wait():
            raise SystemExit("folds failed")
        for part in args.parts.split(","):
            if part == "sweep":
                result["sweep"] = sweep(art, f"sqlite:///{art / 'optuna.db'}", f"s{stamp}",
                                        args.trials, 1)
            elif part == "workers":
                url, started = (args.pg_url, False) if args.pg_url else pg_url()
                if url is None:
                    continue
                try:
                    result["workers_postgresql"] = sweep(art, url, f"w{stamp}",
                                                         args.worker_trials, 2)
                finally:
                    if started:
                        subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh"), "stop"])
            elif part == "tuned":
                result["tuned_vs_default"] = tuned_vs_default(art, result["sweep"])
            elif part == "spread":
                if isic("evaluate", "--profile", "default", f"artifacts={art}", "name=spread",
                        "models=[lgbm]", "fold_seeds=[0,1,2,3,4]").wait():
                    raise SystemExit("evaluate failed")
                ev = json.loads((art / "evals" / "spread.json").read_text())
                result["spread_5_seeds"] = ev.get("summary", ev)
            else:
                raise SystemExit(f"unknown part {part!r}")
            key = {"workers": "workers_postgresql", "spread": "spread_5_seeds",
                   "tuned": "tuned_vs_default"}.get(part, part)
            print(json.dumps({key: result[key]}, indent=2, default=str))
    write_json(result, path)


if __name__ == "__main__":
    main()
