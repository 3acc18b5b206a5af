"""Optional dependencies (pyproject extras) with one clear message when one is missing.

The core install runs the whole pipeline; CatBoost, the Optuna dashboard, PostgreSQL study
storage and MLflow tracking are extras. Importing one through :func:`require` turns a bare
``ModuleNotFoundError`` deep in a run into a one-line error that says which extra to install and
how to do without it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {  # module -> (extra, what needs it, how to do without)
    "catboost": ("catboost", "the CatBoost model (models.cat)", "set models.cat.enabled=false"),
    "pandas": ("catboost", "the CatBoost model (models.cat)", "set models.cat.enabled=false"),
    "pytorch_grad_cam": ("explain", "Grad-CAM (isic explain, the report's and the app's "
                         "heatmaps)", "leave Grad-CAM out (report: gradcam.enabled=false)"),
    "gradio": ("app", "the clinician web app (make app)", "use `isic predict-images` instead"),
    "psycopg2": ("postgres", "a PostgreSQL Optuna storage",
                 "use the default SQLite storage (unset OPTUNA_STORAGE)"),
    "mlflow": ("mlflow", "the run ledger (isic runs, make mlflow-ui)",
               "read artifacts/runs/<name>/metrics.json"),
}


class MissingExtraError(ImportError):
    """An optional dependency that is not installed; the message names the extra."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0] or module not in EXTRAS:
            raise
        extra, what, instead = EXTRAS[module]
        raise MissingExtraError(
            f"{what} needs the optional package {module!r}: pip install 'isicstack[{extra}]' "
            f"(`make setup` installs every extra), or {instead}"
        ) from err
