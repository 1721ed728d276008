"""Counter hits in Redis: the production home of the sliding-window and calendar counters.

Used instead of the `counter_hits` table when a Redis URL is configured (CLEARCIRCLE_REDIS_URL), so many
workers share counters without every hit going through the SQL database. The unit of work reads and writes
hits through the same HitStore interface as the SQL default (store.unit), and signals keep reading them
through the same CounterReader, so decisions do not depend on where the hits live.

Layout: one sorted set per counter key (usually an account id), holding every counter of that key, as the
SQL table's primary key does. A member is the JSON list [counter name, event id, member] and its score the
event's time in ms, so:

- re-recording a hit (a retried write) adds nothing: the event id makes the member unique;
- a distinct count counts the third element, as the SQL path counts the `member` column;
- one ZRANGEBYSCORE per key loads every counter of it, all keys of a batch in one pipelined round trip;
  a batch's hits are written by one script call (add, trim what is older than RETAIN_MS, refresh expiry).

The script touches many keys in one call, so this layout is for one Redis server (or a primary with
replicas), not Redis Cluster, where the keys would need one hash slot.

Hits are written after the batch's SQL transaction commits, never before: a batch that rolls back leaves
no counted hits. A write that fails after the commit is kept and retried with the next batch (harmless,
being idempotent); only a process that dies in between loses those hits, i.e. counts low, never high. For
the same reason another worker that loads a key in the moment between a batch's commit and its Redis write
does not see that batch's hits yet (a window of one round trip).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
# hits older than this (before the newest hit of the key) are trimmed: longer than the longest window a
# signal reads (signals.counters.MAX_WINDOW_MS, a calendar month seen from another time zone: 32 days)
RETAIN_MS = 40 * DAY_MS
MAX_PENDING = 1_000_000  # hits kept for a retry while Redis is unreachable; beyond it the oldest are dropped

# One batch's hits in one command (a pipeline of ZADD/trim/expire per key costs more to pack than to run).
# KEYS: the sorted sets; ARGV[1]: RETAIN_MS; then per key: the number of hits n, then n (score, member) pairs.
_WRITE = """
local retain = tonumber(ARGV[1])
local i = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  i = i + 1
  local newest = 0
  for first = 0, n - 1, 500 do
    local args = {}
    for j = first, math.min(n, first + 500) - 1 do
      local at = tonumber(ARGV[i])
      if at > newest then newest = at end
      args[#args + 1] = ARGV[i]
      args[#args + 1] = ARGV[i + 1]
      i = i + 2
    end
    redis.call('ZADD', KEYS[k], unpack(args))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', string.format('(%d', newest - retain))
  redis.call('PEXPIRE', KEYS[k], retain)
end
return #KEYS
"""


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached (or the URL is bad) when the store is opened."""


def connect(url: str) -> redis.Redis:
    """A client for the URL that retries a dropped connection a few times before giving up."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError])
        client.ping()
    except (ValueError, redis.RedisError) as exc:
        raise RedisUnavailable(f"cannot use Redis at {url}: {exc}") from None
    return client


def _member(name: str, event_id: str, member: str) -> bytes:
    return orjson.dumps([name, event_id, member])


class RedisHits:
    """Counter hits in Redis, as the unit of work's HitStore and as a CounterReader for the faces."""

    def __init__(self, url: str, prefix: str = "cc:hits:") -> None:
        self.url = url
        self.prefix = prefix
        self.client = connect(url)
        self._write = self.client.register_script(_WRITE)
        self._pending: list[dict[str, Any]] = []

    # -- HitStore (store.unit) ------------------------------------------------------------------------
    def load(self, conn: object, keys: list[str], since_ms: int) -> Iterator[tuple[str, str, int, str]]:
        """(key, counter name, at_ms, member) of every hit of the keys at or after since_ms; one round trip."""
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zrangebyscore(self.prefix + key, since_ms, "+inf", withscores=True, score_cast_func=int)
        for key, hits in zip(keys, pipe.execute(), strict=True):
            for raw, at_ms in hits:
                name, _event_id, member = orjson.loads(raw)
                yield key, name, at_ms, member

    def write(self, conn: object, rows: list[dict[str, Any]]) -> None:
        """Inside the batch transaction: nothing (the hits go to Redis once the transaction commits)."""

    def committed(self, rows: list[dict[str, Any]]) -> None:
        """The batch committed: add its hits (and any kept from a failed write), trim, refresh expiry."""
        rows = self._pending + rows if self._pending else rows
        if not rows:
            return
        by_key: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            by_key[r["key"]] += (r["at_ms"], _member(r["name"], r["event_id"], r["member"]))
        args: list[Any] = [RETAIN_MS]
        for pairs in by_key.values():
            args.append(len(pairs) // 2)
            args += pairs
        try:
            self._write(keys=[self.prefix + k for k in by_key], args=args)
        except redis.RedisError as exc:
            # the SQL side is committed; keep the hits and send them again with the next batch
            self._pending = rows[-MAX_PENDING:]
            log.error("counter hits not written to Redis (%d kept for a retry): %s", len(self._pending), exc)
            return
        self._pending = []

    @property
    def pending(self) -> int:
        """Hits waiting to be written again after a failed write."""
        return len(self._pending)

    # -- CounterReader (reads outside the pipeline: quotas in the API and CLI) ---------------------------
    def count(self, key: str, name: str, since_ms: int, until_ms: int, distinct: bool = False) -> int:
        """Hits of one counter in (since_ms, until_ms], as UnitOfWork.count and Store.count_hits count."""
        members = [m for n, m in self._hits(key, since_ms, until_ms) if n == name]
        return len(set(members)) if distinct else len(members)

    def _hits(self, key: str, since_ms: int, until_ms: int) -> Iterable[tuple[str, str]]:
        for raw in self.client.zrangebyscore(self.prefix + key, f"({since_ms}", until_ms):
            name, _event_id, member = orjson.loads(raw)
            yield name, member

    def close(self) -> None:
        self.client.close()
