"""Per-key rate limits for the HTTP API: a token bucket per API key, in this process, answered with 429.

Why in-process: the embedded default is one `serve` process, and a bucket in memory costs a dict look-up
per request. With several workers (uvicorn --workers, many hosts) each process keeps its own buckets, so a
key gets up to N times its rate; the multi-worker deployment should move the bucket to Redis (one
`EVAL` of a token-bucket script per request, keyed like here by the key's hash) — see docs/hardening.md.

Buckets are keyed by a digest of the X-API-Key header, checked before authentication: an unknown or revoked
key is throttled too, so guessing keys cannot hammer the key table. Requests without a key are not
limited here (they are refused with 401 without touching the database).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

_HEADER = b"x-api-key"


class TokenBucket:
    """Buckets of `burst` tokens refilled at `rate` tokens a second, one bucket per key.

    `take(key)` returns 0.0 when a token was available (and takes it), else the seconds until one is.
    At most `max_keys` buckets are kept; the least recently used is dropped first (a dropped bucket comes
    back full, which only ever errs towards letting a request through).
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: bytes, cost: float = 1.0) -> float:
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (cost - tokens) / self.rate
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait


class RateLimit:
    """ASGI middleware: 429 with Retry-After (whole seconds, at least 1) when a key's bucket is empty."""

    def __init__(self, app: Any, bucket: TokenBucket) -> None:
        self.app = app
        self.bucket = bucket

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        key = next((v for k, v in scope.get("headers", ()) if k == _HEADER), None)
        if key:
            wait = self.bucket.take(hashlib.blake2b(key, digest_size=16).digest())
            if wait > 0:
                return await _too_many(send, wait, self.bucket)
        await self.app(scope, receive, send)


async def _too_many(send: Any, wait: float, bucket: TokenBucket) -> None:
    retry = max(1, math.ceil(wait))
    body = orjson.dumps({"detail": f"rate limit exceeded for this API key ({bucket.rate:g} requests/s, "
                                   f"bursts of {bucket.burst:g}); retry after {retry} s"})
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(retry).encode())]})
    await send({"type": "http.response.body", "body": body})
