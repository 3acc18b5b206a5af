"""The MLflow Model Registry of bundles: register one (a new version), point an alias at a
version (``isic promote``), and resolve a reference to a local, checked bundle folder.

The registry is the ledger's own store (:func:`isicstack.ledger.store.store_uri`: the
``sqlite`` file under ``artifacts`` unless ``ISIC_TRACKING`` / ``MLFLOW_TRACKING_URI`` say
otherwise). A version is an MLflow pyfunc model ("models from code":
``serving/mlflow_model.py``) whose artifact ``bundle`` is the bundle folder; its tags carry the
bundle's version and content hash, and :func:`resolve` checks the downloaded files against
them. MLflow is the optional extra ``mlflow``; a bundle folder is served without it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from isicstack.extras import require
from isicstack.ledger.store import client_for, store_uri
from isicstack.serving.config import MODEL_NAME, PromoteConfig
from isicstack.serving.manifest import BUNDLE_FILE, BundleError, verify
from isicstack.settings.keys import ConfigError

log = logging.getLogger(__name__)

EXPERIMENT = "isicstack-bundles"  # the runs that hold the registered versions' files
CODE = Path(__file__).with_name("mlflow_model.py")
REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")
INSTEAD = "serve the bundle folder itself (isic serve dist/bundle)"


class RegistryError(LookupError, ConfigError):
    """A model, version or alias that the registry does not hold: a bad value given (the
    CLI's one-line error, exit 2)."""


def _mlflow(what: str) -> Any:
    """MLflow (the optional extra), its per-file progress bars off (a bundle has ~50 files)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return require("mlflow", needed_by=what, instead=INSTEAD)


def _client(artifacts: str | Path, what: str, create: bool = False) -> tuple[Any, str]:
    """The registry client on ``artifacts``' store and the bundles' experiment id; a store
    file that does not exist is created only to register (``create``), else an error."""
    _mlflow(what)
    uri = store_uri(artifacts)
    if not create and uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise RegistryError(f"{what}: no model registry at {uri} (artifacts={artifacts}): "
                            "register a bundle first (`isic bundle register=on`, make bundle)")
    got = client_for(uri, EXPERIMENT)
    if got is None:  # pragma: no cover - require() above raised already
        raise RuntimeError(f"{what}: MLflow is not available")
    return got


def register(bundle: str | Path, artifacts: str | Path = "artifacts",
             name: str = MODEL_NAME) -> int:
    """Register the (checked) bundle folder as a new version of ``name``; its number."""
    doc = verify(bundle)
    mlflow = _mlflow("registering a bundle")
    client, exp_id = _client(artifacts, "registering a bundle", create=True)
    tags = {"bundle_version": doc["version"], "content_hash": doc["content_hash"]}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        mlflow.pyfunc.save_model(model, python_model=str(CODE),
                                 artifacts={"bundle": str(Path(bundle).resolve())},
                                 pip_requirements=["isicstack"], metadata=tags)
        run = client.create_run(exp_id, run_name=f"bundle {doc['version']}", tags=tags)
        client.log_artifacts(run.info.run_id, str(model), "model")
        client.set_terminated(run.info.run_id)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name, tags={"research_use": doc["research_use"]})
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model",
                                     run_id=run.info.run_id, tags=tags)
    log.info("registry: %s version %s = bundle %s (%s)", name, mv.version, doc["version"],
             store_uri(artifacts))
    return int(mv.version)


def promote(artifacts: str | Path, version: int = 0, alias: str = "champion",
            name: str = MODEL_NAME) -> int:
    """Point ``alias`` at ``version`` of ``name`` (0 = the latest); the version promoted."""
    client, _ = _client(artifacts, "promoting a bundle")
    found = sorted(int(v.version) for v in
                   client.search_model_versions(filter_string=f"name = '{name}'"))
    if not found:
        raise RegistryError(f"promote: no registered model {name!r} in {store_uri(artifacts)}: "
                          "run `isic bundle register=on` (make bundle) first")
    version = version or found[-1]
    if version not in found:
        raise RegistryError(f"promote: {name!r} has no version {version} (versions {found})")
    client.set_registered_model_alias(name, alias, str(version))
    log.info("registry: %s@%s -> version %d", name, alias, version)
    return version


def run(cfg: PromoteConfig) -> dict[str, Any]:
    """``isic promote``: the alias, name and version it now points at."""
    version = promote(cfg.artifacts, cfg.version, cfg.alias, cfg.name)
    return {"name": cfg.name, "alias": cfg.alias, "version": version}


def _model_version(client: Any, ref: str, name: str, alias: str | None,
                   version: str | None, uri: str) -> Any:
    """The registry entry ``ref`` names; a LookupError naming the ref otherwise."""
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except Exception as err:  # MlflowException: RESOURCE_DOES_NOT_EXIST and kin
        raise RegistryError(f"{ref}: not in the model registry at {uri} "
                          f"({str(err).splitlines()[0][:200]})") from err


def _bundle_in(model_dir: Path, ref: str) -> Path:
    """The bundle folder inside a downloaded pyfunc model (its ``MLmodel`` says where)."""
    spec = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    try:
        rel = spec["flavors"]["python_function"]["artifacts"]["bundle"]["path"]
    except (KeyError, TypeError) as err:
        raise BundleError(f"{ref}: the registered model has no `bundle` artifact") from err
    return model_dir / rel


def resolve(ref: str | Path, artifacts: str | Path = "artifacts", cache: str | Path = ""
            ) -> Path:
    """A local, checked bundle folder for ``ref``: a folder path, or ``models:/<name>@<alias>``
    / ``models:/<name>/<version>`` (downloaded once into ``cache``, default
    ``<artifacts>/bundles``, and checked against the version's content hash)."""
    text = str(ref)
    match = REF.match(text)
    if not text.startswith("models:/"):
        if not Path(text).is_dir():
            raise FileNotFoundError(f"{text}: no such bundle folder (or give "
                                    f"models:/{MODEL_NAME}@champion)")
        verify(text)
        return Path(text)
    if match is None:
        raise ValueError(f"{text}: expected models:/<name>@<alias> or models:/<name>/<version>")
    mlflow = _mlflow(f"resolving {text}")
    client, _ = _client(artifacts, f"resolving {text}")
    uri = store_uri(artifacts)
    mv = _model_version(client, text, match["name"], match["alias"], match["version"], uri)
    want = (mv.tags or {}).get("content_hash", "")
    dest = Path(cache or Path(artifacts) / "bundles") / f"{mv.name}-v{mv.version}"
    if (dest / BUNDLE_FILE).is_file():
        try:
            if verify(dest)["content_hash"] == want:
                return dest
        except BundleError as err:
            log.warning("registry: cached %s is damaged (%s): downloading again", dest, err)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp,
                                                       tracking_uri=uri))
        doc = verify(_bundle_in(got, text))
        if want and doc["content_hash"] != want:
            raise BundleError(f"{text}: downloaded bundle has content hash "
                              f"{doc['content_hash'][:12]}, the registry says {want[:12]}")
        shutil.rmtree(dest, ignore_errors=True)
        _bundle_in(got, text).rename(dest)
    log.info("registry: %s -> %s (bundle %s)", text, dest, doc["version"])
    return dest
