"""Settings from the environment (CLEARCIRCLE_*), with embedded defaults: a SQLite file and the built-in pack."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB_URL = "sqlite:///clearcircle.db"
DEFAULT_KEY_FILE = "clearcircle.key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLEARCIRCLE_", extra="ignore")
    db_url: str = DEFAULT_DB_URL
    pack: Path | None = None  # a pack folder; None: the built-in operating-norms pack
    hash_key: str | None = None  # keyed-hash secret for identifiers; else read/created in key_file
    key_file: Path = Path(DEFAULT_KEY_FILE)
    max_batch: int = 1000
    # API limits (docs/hardening.md): request body bytes (413), and per API key a token bucket of
    # `rate_limit_per_s` requests a second with bursts of `rate_limit_burst` (429 + Retry-After); 0: no rate limit
    max_body_bytes: int = 16 * 1024 * 1024
    rate_limit_per_s: float = 1500.0
    rate_limit_burst: int = 3000
    # counter hits in Redis (redis://host:port/db) instead of the database; None: the database (embedded default)
    redis_url: str | None = None
    # the event stream (redis://HOST:PORT/NAME, docs/stream.md) that `POST /v1/events?async=true` publishes to;
    # None: the API decides synchronously only and `async=true` is a 409
    stream_url: str | None = None
    # FastAPI's own OpenTelemetry spans, metrics and logs for every request, for a site that sets up an
    # OpenTelemetry SDK and exporter. Off by default: /metrics (Prometheus) is the engine's metrics, and when
    # on, FastAPI looks up the OpenTelemetry providers on every request, SDK or not (docs/hardening.md)
    otel: bool = False
    # single events: after answering a group, how long (at most, and never longer than the group took) the
    # deciding thread waits for the callers it answered to ask again, so a caller's pool of connections is
    # decided in one group rather than two that take turns (api/coalesce.py). 0: take what is queued at once
    coalesce_linger_ms: float = Field(3.0, ge=0, le=1000)


def identifier_key(settings: Settings) -> bytes:
    """The secret for hashing phones/devices/payments: from the environment, or a file made once (0600)."""
    if settings.hash_key:
        return settings.hash_key.encode()
    path = settings.key_file
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
