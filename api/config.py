"""The config of ``isic serve`` (``configs/serve.yaml``), kept apart from the server (FastAPI,
torch) so ``isic serve --help`` loads neither."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from isicstack.settings.command import Command
from isicstack.settings.keys import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeConfig:
    """Config of ``isic serve`` (``configs/serve.yaml``)."""

    COMMAND: ClassVar[Command] = Command(
        "serve", "isicstack.api.server",
        "the HTTP JSON scoring API over a model bundle, on 127.0.0.1:<port>", yaml="serve",
        flags=("bundle", "port", "host", "log"))

    bundle: str = "dist/bundle"       # a bundle folder or models:/isicstack@champion
    artifacts: str = "artifacts"      # the ledger (MLflow registry) a models:/ URI is read from
    profile: str = "default"          # config profile in use (set by --profile)
    host: str = "127.0.0.1"           # loopback only; any other address needs the token
    port: int = 8000                  # port on host
    log: str = "artifacts/serve/predictions.db"  # the prediction log (SQLite, mode 0600)
    retention_days: float = 365.0     # log rows older than this are pruned at start and daily
    store_pixels: bool = False        # also keep each crop's bytes in the log
    token_env: str = "ISIC_API_TOKEN"  # env var holding the bearer token (required off loopback)
    max_body_mb: float = 64.0         # larger request bodies are refused (413)
    max_lesions: int = 200            # lesions in one request
    max_pixels: int = 4_000_000       # pixels of one crop (header checked before decoding)
    timeout_s: float = 60.0           # a request not scored by then is answered 503
    batch_lesions: int = 256          # concurrent requests are scored together up to this
    batch_wait_ms: float = 5.0        # how long the first request waits for others to join
    cpu_threads: int = 0              # torch threads of the image models; 0 = every core

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535, got {self.port}")
        for key in ("max_body_mb", "max_lesions", "max_pixels", "timeout_s", "batch_lesions"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK
