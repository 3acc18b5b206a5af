"""Kaggle offline inference: install the isicstack wheel shipped beside this file, then predict.

``isic kaggle-package`` copies this file to ``dist/kaggle/run_inference.py``. It imports nothing
from isicstack at module level, since isicstack is installed only when it runs: a notebook with
internet off has no index, so the wheel is installed with ``--no-index --no-deps`` into a private
folder (``--site``) that is put first on ``sys.path`` (an installed copy elsewhere cannot shadow
it). In a Kaggle notebook, with this package added as an input dataset::

    !python /kaggle/input/<dataset-slug>/run_inference.py

Locally, against a folder laid out like ``/kaggle/input/isic-2024-challenge``::

    python dist/kaggle/run_inference.py --input <dir> --out <dir>/submission.csv [key=value ...]

``submission.csv`` holds the ranking score; when the package ships calibration maps
(``isic calibrate`` before ``make kaggle-package``), ``<preds-dir>/risk.csv`` holds the submitted
model's score and calibrated risk (``submit_calibrated=true`` submits the risk instead).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
KAGGLE_INPUT = "/kaggle/input/isic-2024-challenge"
KAGGLE_OUT = "/kaggle/working/submission.csv"
DEFAULT_SITE = str(Path(tempfile.gettempdir()) / "isicstack_site")  # the system temp folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default=os.environ.get("ISIC_INPUT", KAGGLE_INPUT),
                   help="test directory (test-metadata.csv, test-image.hdf5); env ISIC_INPUT")
    p.add_argument("--out", default=os.environ.get("ISIC_OUT", KAGGLE_OUT),
                   help="submission.csv to write; env ISIC_OUT")
    p.add_argument("--preds-dir", default=None,
                   help="per-model test scores (default: <out folder>/predictions)")
    p.add_argument("--site", default=os.environ.get("ISIC_SITE", DEFAULT_SITE),
                   help="folder the wheel is installed into; env ISIC_SITE")
    p.add_argument("--package", default=str(HERE), help="the package folder (this file's)")
    p.add_argument("overrides", nargs="*", help="key=value for the predict config")
    return p.parse_args(argv)


def install(package: Path, site: Path) -> None:
    """Every wheel in ``package/wheels`` into ``site``, offline and without dependencies."""
    for sub in ("wheels", "artifacts"):
        if not (package / sub).is_dir():
            raise SystemExit(f"{package / sub}: folder missing; upload the package with "
                             "`kaggle datasets create/version ... --dir-mode zip` (KAGGLE.md)")
    wheels = sorted(str(w) for w in (package / "wheels").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"{package / 'wheels'}: no wheel found; rebuild with "
                         "`make kaggle-package`")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                           "--upgrade", "--quiet", "--target", str(site), *wheels])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    package, site = Path(args.package).resolve(), Path(args.site).resolve()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    install(package, site)
    sys.path.insert(0, str(site))
    logging.basicConfig(level=logging.INFO, datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import isicstack
    from isicstack.inference.config import PredictConfig
    from isicstack.inference.predict import run
    from isicstack.settings.layers import load_config

    where = Path(isicstack.__file__).resolve()
    if site not in where.parents:
        raise SystemExit(f"isicstack imported from {where}, not from {site}")
    out = Path(args.out)
    preds = args.preds_dir or str(out.parent / "predictions")
    overrides = [f"data_dir={args.input}", f"artifacts={package / 'artifacts'}", f"out={out}",
                 f"preds_dir={preds}", f"num_workers={min(8, os.cpu_count() or 1)}",
                 *args.overrides]
    # predict.yaml (base = the resolved config at packaging time) sits beside this file
    cfg = load_config(PredictConfig, "predict", "default", overrides, config_dir=package,
                      use_tuned=False)
    summary = run(cfg)
    risk = summary.get("risk_file")  # shipped calibration maps: score and calibrated risk
    print(f"run_inference: isicstack from {where.parent}; wrote {summary['submission']} "
          f"({summary['rows']} rows, {summary['total_seconds']}s)"
          + (f"; calibrated risk in {risk}" if risk else "; no calibrated risk shipped"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
