"""Per-key rate limits for the HTTP API: a token bucket per API key, answered with 429 and Retry-After.

Two kinds of limiter behind one interface (`Limiter`), registered in `LIMITERS` and chosen by `limiter_for`:

- ``memory`` (the embedded default, no Redis configured): the buckets live in this process, a dict look-up per
  request. With several workers each process keeps its own buckets, so a key gets up to N times its rate.
- ``redis`` (when `Settings.redis_url` is set): one bucket per key in Redis, refilled and taken by one Lua
  script (atomic: read, refill, take, expire in one round trip, by Redis' own clock, so the hosts' clocks do not
  matter). Every worker on every host shares one limit per key. The middleware awaits it on the event loop
  (redis.asyncio, one client per loop), so a round trip never blocks other requests.

Buckets are keyed by a blake2b digest of the X-API-Key header, checked before authentication: an unknown or
revoked key is throttled too, so guessing keys cannot hammer the key table. Redis only ever sees the digest
(``cc:rl:<hex>``), never the key. Requests without a key are not limited here (they are refused with 401
without touching the database).

**Redis unreachable mid-run: fail open, to the per-process bucket.** When a Redis call fails (refused,
timed out, any RedisError) the limiter logs it once per outage and takes the token from an in-process bucket
of the same rate and burst instead, and tries Redis again after `RETRY_S`. So an outage degrades the limit to
what a deployment without Redis has (N workers: up to N times the rate), never below it. Failing closed would
turn a Redis outage into an outage of the whole API for every client, including the well-behaved ones, for
the sake of a limit that only protects capacity; authentication and every other check still apply. Timeouts
are short (`TIMEOUT_S`) and there is no retry, so a hung Redis costs at most one timeout per `RETRY_S`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from clearcircle.config import Settings

log = logging.getLogger(__name__)

_HEADER = b"x-api-key"
REDIS_PREFIX = "cc:rl:"
TIMEOUT_S = 0.5  # connect and read timeout of a Redis call; then the local bucket decides
RETRY_S = 1.0  # after a failed Redis call, the local bucket alone for this long
POOL_SIZE = 32  # Redis connections per event loop (one per worker process)
_REDIS_DOWN = (redis.RedisError, OSError)


class Limiter(Protocol):
    """What the middleware needs: the limit (for the 429 message) and `wait`, the seconds until a token is free
    (0.0 when one was taken)."""

    rate: float
    burst: float

    async def wait(self, key: bytes, cost: float = 1.0) -> float: ...


class TokenBucket:
    """Buckets of `burst` tokens refilled at `rate` tokens a second, one bucket per key, in this process.

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

    async def wait(self, key: bytes, cost: float = 1.0) -> float:
        return self.take(key, cost)


# KEYS[1]: the bucket (a hash: tokens, at in microseconds); ARGV: rate per s, burst, cost.
# Returns the wait in microseconds (0: the token was taken). Numbers are kept as formatted strings: Lua's
# tostring keeps 14 digits, too few for a time in microseconds.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000000)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) / rate * 1000000)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""


class RedisTokenBucket:
    """The same token bucket, kept in Redis and shared by every process that uses the same Redis database.

    `take` (blocking, for scripts and tests) and `wait` (the middleware's, non-blocking) both run the one
    script; on a Redis error both fall back to `local`, an in-process TokenBucket (see the module docstring).
    A bucket left alone expires once it would be full again, so idle keys cost Redis nothing.
    """

    def __init__(self, url: str, rate: float, burst: int, *, prefix: str = REDIS_PREFIX,
                 retry_s: float = RETRY_S) -> None:
        self.local = TokenBucket(rate, burst)  # validates rate and burst; the fallback while Redis is away
        self.rate, self.burst = self.local.rate, self.local.burst
        self.url, self.prefix, self.retry_s = url, prefix, retry_s
        self._options: dict[str, Any] = {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S}
        self._sync = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._options)  # no retry: see above
        self._sync_take = self._sync.register_script(_TAKE)
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._down_until = 0.0  # monotonic time until which Redis is not tried
        self._down_logged = False

    def _key(self, key: bytes) -> str:
        return self.prefix + key.hex()

    def _args(self, cost: float) -> list[str]:
        return [repr(self.rate), repr(self.burst), repr(float(cost))]

    def _usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def _up(self) -> None:
        if self._down_logged:
            log.warning("rate limits: Redis at %s answers again; limits are shared again", self.url)
            self._down_logged = False

    def _down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.retry_s
        if not self._down_logged:
            self._down_logged = True
            log.error("rate limits: Redis at %s unreachable (%s: %s); failing open to this process's own "
                      "buckets until it answers", self.url, type(exc).__name__, exc)

    def take(self, key: bytes, cost: float = 1.0) -> float:
        if self._usable():
            try:
                micros = self._sync_take(keys=[self._key(key)], args=self._args(cost))
            except _REDIS_DOWN as exc:
                self._down(exc)
            else:
                self._up()
                return int(micros) / 1_000_000
        return self.local.take(key, cost)

    def _script(self) -> tuple[Any, asyncio.Semaphore]:
        """The script bound to a client of the running loop (an asyncio client cannot cross loops), and the
        semaphore that queues a burst of concurrent requests for the loop's POOL_SIZE connections (waiting for
        a connection is this process being busy, not Redis being down, so it is not under the timeout)."""
        loop = asyncio.get_running_loop()
        found = self._per_loop.get(loop)
        if found is None:
            pool = redis.asyncio.ConnectionPool.from_url(self.url, max_connections=POOL_SIZE,
                                                         retry=AsyncRetry(NoBackoff(), 0), **self._options)
            script = redis.asyncio.Redis(connection_pool=pool).register_script(_TAKE)
            found = self._per_loop[loop] = (script, asyncio.Semaphore(POOL_SIZE))
        return found

    async def wait(self, key: bytes, cost: float = 1.0) -> float:
        if self._usable():
            script, slots = self._script()
            try:
                async with slots:
                    micros = await script(keys=[self._key(key)], args=self._args(cost))
            except _REDIS_DOWN as exc:
                self._down(exc)
            else:
                self._up()
                return int(micros) / 1_000_000
        return self.local.take(key, cost)

    def close(self) -> None:
        self._sync.close()


def _memory(settings: Settings) -> Limiter:
    return TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst)


def _redis(settings: Settings) -> Limiter:
    assert settings.redis_url
    return RedisTokenBucket(settings.redis_url, settings.rate_limit_per_s, settings.rate_limit_burst)


# The kinds of limiter: name -> factory from settings. `limiter_for` picks one; a new kind registers here.
LIMITERS: dict[str, Callable[[Settings], Limiter]] = {"memory": _memory, "redis": _redis}


def limiter_kind(settings: Settings) -> str | None:
    """Which limiter the settings ask for: redis with a Redis URL, memory without, None when off (rate 0)."""
    if settings.rate_limit_per_s <= 0:
        return None
    return "redis" if settings.redis_url else "memory"


def limiter_for(settings: Settings) -> Limiter | None:
    kind = limiter_kind(settings)
    return None if kind is None else LIMITERS[kind](settings)


class RateLimit:
    """ASGI middleware: 429 with Retry-After (whole seconds, at least 1) when a key's bucket is empty."""

    def __init__(self, app: Any, bucket: Limiter) -> None:
        self.app = app
        self.bucket = bucket

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        key = next((v for k, v in scope.get("headers", ()) if k == _HEADER), None)
        if key:
            wait = await self.bucket.wait(hashlib.blake2b(key, digest_size=16).digest())
            if wait > 0:
                return await _too_many(send, wait, self.bucket)
        await self.app(scope, receive, send)


async def _too_many(send: Any, wait: float, bucket: Limiter) -> None:
    retry = max(1, math.ceil(wait))
    body = orjson.dumps({"detail": f"rate limit exceeded for this API key ({bucket.rate:g} requests/s, "
                                   f"bursts of {bucket.burst:g}); retry after {retry} s"})
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(retry).encode())]})
    await send({"type": "http.response.body", "body": body})
