"""``isic serve``: the scoring API on uvicorn.

FastAPI + uvicorn rather than LitServe: both are already installed with the web page (Gradio
runs on them), FastAPI's typed request models give the named fields and the OpenAPI page the
issue asks for, and the one thing LitServe would add, batching concurrent requests, is a small
thread here (``api.batcher``) that also commits each batch to the prediction log before any
answer leaves, which a generic batching server would not do for us.

Checked before the port opens: a host off loopback needs a token (the variable ``token_env``);
the prediction log's folder must be writable (a read-only location or a full disk is an error
at start, not a 503 on the first request); the bundle must load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from isicstack.api.config import ServeConfig
from isicstack.extras import require
from isicstack.serving.log_file import check_writable
from isicstack.serving.predlog import PredictionLog, key_from_env
from isicstack.serving.scorer import Scorer
from isicstack.settings.keys import ConfigError

log = logging.getLogger(__name__)


def token_of(cfg: ServeConfig) -> str:
    """The bearer token (from the environment), required when the host is not loopback."""
    token = os.environ.get(cfg.token_env, "")
    if not cfg.loopback and len(token) < 16:
        raise ConfigError(f"host={cfg.host} is not loopback: set {cfg.token_env} to a token of "
                          "at least 16 characters (clients send `Authorization: Bearer "
                          "<token>`), or serve on 127.0.0.1")
    return token


def open_log(cfg: ServeConfig) -> Any:
    """The prediction log, checked writable, old rows pruned."""
    path = check_writable(Path(cfg.log))
    # the patient hash's key: ISIC_LOG_KEY; on loopback without one, a per-log key kept beside
    # the log (mode 0600) so `make serve` runs from a fresh clone; off loopback it is required
    store = PredictionLog(path, key_from_env(), retention_days=cfg.retention_days,
                          store_pixels=cfg.store_pixels, allow_unkeyed=cfg.loopback)
    pruned = store.prune()
    if pruned:
        log.info("serve: pruned %d log row(s) older than %g days", pruned, cfg.retention_days)
    return store


def build_app(cfg: ServeConfig, store: Any = None) -> Any:
    """The ASGI app of ``cfg`` (the bundle loaded, the log opened unless ``store`` is given)."""
    require("fastapi", needed_by="isic serve", instead="score a test folder offline with "
            "`isic predict`")
    from isicstack.api.routes import create_app  # after the extra's check: FastAPI

    token = token_of(cfg)
    store = open_log(cfg) if store is None else store
    scorer = Scorer.from_bundle(cfg.bundle, cfg.cpu_threads, cfg.artifacts)
    return create_app(scorer, store, cfg, token)


def run(cfg: ServeConfig) -> int:
    """Serve until interrupted."""
    require("uvicorn", needed_by="isic serve", instead="score a test folder offline with "
            "`isic predict`")
    import uvicorn

    app = build_app(cfg)
    log.info("serve: http://%s:%d (OpenAPI page /docs), model %s, log %s; research use, not "
             "a medical device", cfg.host, cfg.port, app.version, cfg.log)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning",
                timeout_keep_alive=5, timeout_graceful_shutdown=10)
    return 0
