"""The event stream on Redis Streams: P partition streams, one consumer group, one owner per partition.

Keys of a stream NAME (one Redis server, not Redis Cluster):

- `NAME:partitions`  the partition count P, fixed on first use (a different count later is refused);
- `NAME:ordering`    `account` (the default) or `exact`, fixed on first use (exact.py; docs/stream.md);
- `NAME:p{i}`        partition i: the events of the accounts whose id hashes to i, in publication order,
                     read by the consumer group `workers`; on an exact stream entry ids are `SEQ-0`, SEQ
                     counted over the whole stream in `NAME:seq`, and barriers sit beside the events;
- `NAME:done`        on an exact stream, each partition's highest committed SEQ (and a message on the
                     channel `NAME:progress` each time one rises, which wakes the workers waiting for it);
- `NAME:lease:{i}`   the worker that owns partition i (SET NX PX, renewed; expires when its worker dies);
- `NAME:workers`     live workers: a sorted set of worker id -> heartbeat expiry (Redis server time, ms);
- `NAME:plan`        who should own which partition (assign.py), written by the first live worker from the
                     partitions' backlog, expiring with its writer;
- `NAME:decisions`   decisions out (sinks.RedisDecisionStream); `NAME:dead`: entries that are not events.

Each live worker wants the partitions the plan gives it: an even share of the backlog (assign.py), or, with
no plan for the workers it sees alive, the partitions i with i % n == k (n live workers sorted by id, k its
rank). Either moves when a worker joins or dies. A worker gives up a partition only between batches,
and takes one only once its lease is free; on taking it, it claims the partition's pending entries
(XAUTOCLAIM) and decides them before anything new, so a partition is always decided in stream order. Every
read checks the lease in the same atomic step (`_READ`): a worker paused past its lease reads nothing more
once it wakes, so all it can still decide is what the new owner claimed and decides first. Each owner trims
its partitions to the oldest entry the group still needs (`_TRIM`): decided events do not stay in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from clearcircle.stream.assign import Plan, balance, even_share
from clearcircle.stream.base import Batch, Entry, StreamError
from clearcircle.stream.exact import Progress, needed, seq_of, walk

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 16
MAX_PARTITIONS = 4096
GROUP = "workers"
FIELD = b"e"  # the event JSON in a partition entry
WAITS = b"w"  # exact streams: the other partitions an event waits for, "3,9"
BARRIER = b"b"  # exact streams: a barrier's event's partition
ORDERINGS = ("account", "exact")
REBALANCE_S = 0.25  # between batches, at most this often: follow the plan, take partitions handed over
WAIT_S = 0.05  # an exact worker whose every partition waits looks again after this, or when woken sooner
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")

# KEYS: lease keys; ARGV: worker id, ttl ms. Renews the leases still held by the worker; 1/0 for each.
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
# KEYS: lease keys; ARGV: worker id. Deletes the leases the worker still holds (never another's).
_RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""
# Exact streams. KEYS[1]: NAME:done, then partitions; ARGV: their numbers. For each: its committed seq and
# the id of its first entry after it ('' if none).
_PROGRESS = """
local out = {}
for i = 1, #ARGV do
  local done = redis.call('HGET', KEYS[1], ARGV[i]) or '0'
  local after = redis.call('XRANGE', KEYS[i + 1], '(' .. done .. '-0', '+', 'COUNT', 1)
  out[#out + 1] = done
  out[#out + 1] = after[1] and after[1][1] or ''
end
return out
"""
# Reads only a lease holder can make: the lease is checked in the same atomic step as the read, so a worker
# paused past its lease (a stopped VM) reads nothing more of the partition once it wakes; what it had read
# before is pending on it and claimed by the new owner first (docs/stream.md, Leases). KEYS: the partitions'
# lease keys, then their stream keys; ARGV: worker id (its consumer name), group, count, then each
# partition's position ('>' for new entries, else its pending entries after that id). For each partition:
# {0} if the lease is not the worker's; else {1, entries, top}, top being the stream's newest id when a '>'
# read found nothing (where a blocking wait for new entries starts), else ''.
_READ = """
local n = #KEYS / 2
local out = {}
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    out[i] = {0}
  else
    local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[1], 'COUNT', ARGV[3],
                             'STREAMS', KEYS[n + i], ARGV[3 + i])
    local rows = {}
    if reply then rows = reply[1][2] end
    local top = ''
    if #rows == 0 and ARGV[3 + i] == '>' then
      local last = redis.call('XREVRANGE', KEYS[n + i], '+', '-', 'COUNT', 1)
      top = last[1] and last[1][1] or '0-0'
    end
    out[i] = {1, rows, top}
  end
end
return out
"""
_BEFORE = """
local function before(a, b)  -- stream ids MS-SEQ: a < b
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) < tonumber(bm) end
  return tonumber(as) < tonumber(bs)
end
"""
_GROUPS = """
local function groups(key)  -- XINFO GROUPS of an existing stream, each group as a table of its fields
  local out = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    out[#out + 1] = f
  end
  return out
end
"""
# KEYS: partition streams. Removes the entries before the oldest one a consumer group still needs: its oldest
# pending entry, else its last delivered one (kept, as where the group stands). Approximate (`~`): whole nodes
# of the stream, which is cheap. Returns how many entries went.
_TRIM = _BEFORE + _GROUPS + """
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local floor = nil
    for _, f in ipairs(groups(key)) do
      local need = f['last-delivered-id']
      local pending = redis.call('XPENDING', key, f['name'])
      if pending[1] > 0 then need = pending[2] end
      if floor == nil or before(need, floor) then floor = need end
    end
    if floor ~= nil and floor ~= '0-0' then
      removed = removed + redis.call('XTRIM', key, 'MINID', '~', floor)
    end
  end
end
return removed
"""
# KEYS: partition streams; ARGV[1]: group. For each: the entries not yet decided (the group's lag, i.e. not
# yet delivered, plus its pending ones); the stream's length where the lag is not known.
_BACKLOG = _GROUPS + """
local out = {}
for i, key in ipairs(KEYS) do
  local n = 0
  if redis.call('EXISTS', key) == 1 then
    n = redis.call('XLEN', key)
    for _, f in ipairs(groups(key)) do
      if f['name'] == ARGV[1] and f['lag'] then n = f['lag'] + f['pending'] end
    end
  end
  out[i] = n
end
return out
"""
# KEYS[1]: NAME:done; ARGV: partition, seq pairs. Raises each partition's committed seq (never lowers it: a
# worker that lost a partition may still acknowledge an older batch).
_ADVANCE = """
for i = 1, #ARGV, 2 do
  local done = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > done then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


@dataclass(frozen=True)
class StreamAddress:
    """`redis://HOST:PORT/NAME[?db=N]`: where the Redis server is and the stream's name on it."""

    redis_url: str
    name: str

    @classmethod
    def parse(cls, url: str) -> StreamAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise StreamError(f"--stream {url!r}: expected redis://HOST:PORT/NAME")
        name = parts.path.lstrip("/")
        if not _NAME.match(name):
            raise StreamError(f"--stream {url!r}: the stream name (after the last /) must be 1-100 letters, "
                              "digits, '_', '.' or '-'")
        db = parse_qs(parts.query).get("db", ["0"])[0]
        if not db.isdigit():
            raise StreamError(f"--stream {url!r}: db must be a number")
        try:
            port = parts.port or 6379
        except ValueError:
            raise StreamError(f"--stream {url!r}: bad port") from None
        auth = f"{parts.username or ''}:{parts.password}@" if parts.password else ""
        return cls(f"{parts.scheme}://{auth}{parts.hostname}:{port}/{db}", name)

    def partition_key(self, i: int) -> str:
        return f"{self.name}:p{i}"

    def lease_key(self, i: int) -> str:
        return f"{self.name}:lease:{i}"

    @property
    def count_key(self) -> str:
        return f"{self.name}:partitions"

    @property
    def workers_key(self) -> str:
        return f"{self.name}:workers"

    @property
    def plan_key(self) -> str:
        return f"{self.name}:plan"

    @property
    def decisions_key(self) -> str:
        return f"{self.name}:decisions"

    @property
    def dead_key(self) -> str:
        return f"{self.name}:dead"


def connect(address: StreamAddress) -> redis.Redis:
    """A client that retries a dropped connection a few times, checked with a PING (a clear error at once)."""
    client = redis.Redis.from_url(address.redis_url, retry=Retry(ExponentialBackoff(cap=2.0), 5),
                                  retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                                  socket_connect_timeout=5, health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise StreamError(f"cannot reach Redis at {address.redis_url.split('@')[-1]}: {exc}") from None
    return client


def ensure_group(client: redis.Redis, key: str, group: str) -> None:
    """Create the consumer group (and the stream) from the start of the stream, unless it exists."""
    try:
        client.xgroup_create(key, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def open_partitions(client: redis.Redis, address: StreamAddress, requested: int | None,
                    ordering: str | None = None) -> int:
    """The stream's partition count: fixed by whoever uses the stream first (default 16), then kept; and
    likewise its ordering (`account` unless asked otherwise, also for a stream made before orderings
    existed).

    Changing either would break the order events are decided in (a new count moves accounts to other
    partitions while older events of theirs are still queued in the old ones), so a different value is
    refused rather than applied."""
    if requested is not None and not 1 <= requested <= MAX_PARTITIONS:
        raise StreamError(f"--partitions must be between 1 and {MAX_PARTITIONS}")
    if ordering is not None and ordering not in ORDERINGS:
        raise StreamError(f"--ordering must be one of {', '.join(ORDERINGS)}")
    key = address.count_key
    legacy = client.exists(key) and not client.exists(f"{address.name}:ordering")
    client.set(f"{address.name}:ordering", "account" if legacy else ordering or "account", nx=True)
    client.set(key, requested or DEFAULT_PARTITIONS, nx=True)
    stored = int(client.get(key))
    if requested is not None and requested != stored:
        raise StreamError(f"stream {address.name!r} has {stored} partitions; --partitions {requested} would "
                          "reorder accounts' events (use a new stream name to change it)")
    kept = ordering_of(client, address)
    if ordering is not None and ordering != kept:
        raise StreamError(f"stream {address.name!r} is ordered {kept!r}; it cannot become {ordering!r} (use a "
                          "new stream name)")
    for i in range(stored):
        ensure_group(client, address.partition_key(i), GROUP)
    return stored


def ordering_of(client: redis.Redis, address: StreamAddress) -> str:
    """`exact` or `account` (docs/stream.md); `account` for a stream not opened by this version."""
    value = client.get(f"{address.name}:ordering")
    return value.decode() if value else "account"


# KEYS[1]: a partition; ARGV: event JSON texts, XADDed in order under FIELD
_XADD_EVENTS = f"""
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], '*', '{FIELD.decode()}', ARGV[i])
end
return #ARGV
"""


# KEYS[1]: the seq counter, then partitions; ARGV[1]: n, then per event: its partition's KEYS index, its JSON,
# the KEYS indexes of the partitions it waits for ("" or "3,5"), those partitions' numbers, its partition's
# number. Each event gets the next seq, its entry the id SEQ-0, each partition it waits for a barrier SEQ-0.
_XADD_EXACT = f"""
local n = tonumber(ARGV[1])
local seq = redis.call('INCRBY', KEYS[1], n) - n
local j = 2
for i = 1, n do
  seq = seq + 1
  local id = string.format('%d-0', seq)
  local k = tonumber(ARGV[j])
  if ARGV[j + 3] == '' then
    redis.call('XADD', KEYS[k], id, '{FIELD.decode()}', ARGV[j + 1])
  else
    redis.call('XADD', KEYS[k], id, '{FIELD.decode()}', ARGV[j + 1], '{WAITS.decode()}', ARGV[j + 3])
    for w in string.gmatch(ARGV[j + 2], '%d+') do
      redis.call('XADD', KEYS[tonumber(w)], id, '{BARRIER.decode()}', ARGV[j + 4])
    end
  end
  j = j + 5
end
return n
"""
Routed = tuple[int, bytes] | tuple[int, bytes, tuple[int, ...]]


def publish(client: redis.Redis, address: StreamAddress, items: Iterable[Routed], chunk: int = 1000,
            exact: bool | None = None) -> int:
    """XADD each (partition, event JSON[, partitions it waits for]) in order, `chunk` events per round trip.
    Returns how many were added. `exact` None: as the stream is ordered (`ordering_of`).

    An account-ordered stream gets one script call per partition holding that partition's events, not one
    XADD per event: packing hundreds of commands was most of the publisher's CPU. An exact stream gets one
    call per chunk, which numbers the chunk's events in order and adds their barriers."""
    if exact is None:
        exact = ordering_of(client, address) == "exact"
    if exact:
        return _publish_exact(client, address, items, chunk)
    add = client.register_script(_XADD_EVENTS)
    n = 0
    pending: dict[int, list[bytes]] = {}

    def send() -> None:
        pipe = client.pipeline(transaction=False)
        for partition, events in pending.items():
            add(keys=[address.partition_key(partition)], args=events, client=pipe)
        pipe.execute()
        pending.clear()

    for partition, data, *_waits in items:
        pending.setdefault(partition, []).append(data)
        n += 1
        if n % chunk == 0:
            send()
    if pending:
        send()
    return n


def _publish_exact(client: redis.Redis, address: StreamAddress, items: Iterable[Routed], chunk: int) -> int:
    add = client.register_script(_XADD_EXACT)
    n = 0
    keys: dict[int, int] = {}  # partition -> its index in KEYS
    args: list[bytes | int | str] = []

    def index(partition: int) -> int:
        return keys.setdefault(partition, len(keys) + 2)

    def send() -> None:
        add(keys=[f"{address.name}:seq", *(address.partition_key(p) for p in keys)], args=[len(args) // 5, *args])
        keys.clear()
        args.clear()

    for partition, data, *rest in items:
        waits = rest[0] if rest else ()
        args += [index(partition), data, ",".join(str(index(w)) for w in waits), ",".join(map(str, waits)),
                 partition]
        n += 1
        if n % chunk == 0:
            send()
    if args:
        send()
    return n


def _exact_entry(entry_id: bytes, fields: dict[bytes, bytes] | None) -> Entry:
    """An entry of an exact stream: an event (with the partitions it waits for) or a barrier."""
    fields = fields or {}
    waits = fields.get(WAITS)
    barrier = fields.get(BARRIER)
    return Entry(entry_id.decode(), fields.get(FIELD, b""), seq_of(entry_id),
                 tuple(int(w) for w in waits.split(b",")) if waits else (),
                 int(barrier) if barrier is not None else None)


@dataclass(frozen=True)
class StoredPlan:
    """`NAME:plan` as its maker wrote it: the live workers it was made for, partition -> worker, the maker."""

    workers: list[str]
    owners: Plan
    made_by: str

    def in_force(self, live: list[str], partitions: int) -> bool:
        """Made for exactly these live workers and covering every partition: followed; otherwise not."""
        return self.workers == live and len(self.owners) == partitions

    def dumps(self) -> bytes:
        return orjson.dumps({"workers": self.workers, "owners": [self.owners[i] for i in sorted(self.owners)],
                             "made_by": self.made_by})


def read_plan(stored: bytes | None, partitions: int) -> StoredPlan | None:
    """The stored plan (its first `partitions` owners), None if there is none; a malformed one is logged and
    read as none."""
    if not stored:
        return None
    try:
        doc = orjson.loads(stored)
        return StoredPlan([str(w) for w in doc["workers"]],
                          {i: str(w) for i, w in enumerate(doc["owners"][:partitions])}, str(doc["made_by"]))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        log.warning("ignoring a malformed partition plan: %r", stored[:200])
        return None


def backlog_of(client: redis.Redis, address: StreamAddress, partitions: int) -> dict[int, int]:
    """Each partition's events not yet decided: not delivered to the group yet, or delivered and pending."""
    keys = [address.partition_key(i) for i in range(partitions)]
    return dict(enumerate(map(int, client.register_script(_BACKLOG)(keys=keys, args=[GROUP]))))


def server_ms(client: redis.Redis) -> int:
    """Redis server time: one clock for every worker's heartbeat, whatever machine it runs on."""
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def worker_id() -> str:
    """Unique per process and readable in XINFO: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RedisSource:
    """An EventSource over the partition streams, with leases and a heartbeat thread (see the module doc).

    `lease_ms` is the claim timeout: a dead worker's partitions (and their pending entries) are taken over
    by another worker at most about that long after its last heartbeat. `unit` is the backlog, in events,
    worth moving a partition for (`assign.balance`; the worker's batch size)."""

    def __init__(self, client: redis.Redis, address: StreamAddress, partitions: int, lease_ms: int = 30_000,
                 consumer: str | None = None, unit: int = 500) -> None:
        self.client = client
        self.address = address
        self.partitions = partitions
        self.lease_ms = lease_ms
        self.me = consumer or worker_id()
        self.owned: set[int] = set()
        self._drained: dict[int, bool] = {}  # False: read this partition's pending entries ("0") before new
        self.exact = ordering_of(client, address) == "exact"
        self._buffers: dict[int, deque[Entry]] = {}  # exact: entries read, not yet handed out, by partition
        self._last: dict[int, str] = {}  # exact: the last pending entry read, by partition
        self._lost: set[int] = set()  # leases the heartbeat or a read found taken or expired
        self._live: list[str] = [self.me]
        self._plan: Plan | None = None  # the plan for the live workers this worker sees, if there is one
        self.unit = unit
        self._next_rebalance = 0.0
        self._interval = max(0.05, min(1.0, lease_ms / 6000))
        self._stop = threading.Event()
        self._lock = threading.Lock()  # owned / lost between the loop and the heartbeat
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._progress = client.register_script(_PROGRESS)
        self._advance = client.register_script(_ADVANCE)
        self._read_script = client.register_script(_READ)
        self._trim = client.register_script(_TRIM)
        self._wake = None
        if self.exact:  # its own connection: a waiting worker blocks on it, not on a poll loop
            self._wake = client.pubsub(ignore_subscribe_messages=True)
            self._wake.subscribe(f"{address.name}:progress")
        self._beat()
        self._thread = threading.Thread(target=self._heartbeat, name="stream-heartbeat", daemon=True)
        self._thread.start()

    # -- membership and leases ---------------------------------------------------------------------------
    def _beat(self) -> None:
        """Announce this worker, forget dead ones, renew this worker's leases (noting any it lost), trim the
        partitions it owns, and follow (or, as the first live worker, make) the plan."""
        key = self.address.workers_key
        now = server_ms(self.client)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(key, {self.me: now + self.lease_ms})
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zrangebyscore(key, now, "+inf")
        pipe.get(self.address.plan_key)
        _added, _removed, live, stored = pipe.execute()
        self._live = sorted(w.decode() for w in live)
        with self._lock:
            owned = sorted(self.owned)
        if owned:
            kept = self._renew(keys=[self.address.lease_key(i) for i in owned], args=[self.me, self.lease_ms])
            with self._lock:
                self._lost.update(i for i, ok in zip(owned, kept, strict=True) if not ok)
            self._trim(keys=[self.address.partition_key(i) for i, ok in zip(owned, kept, strict=True) if ok])
        stored_plan = read_plan(stored, self.partitions)
        self._plan = self._make_plan(stored_plan) if self._first() else self._in_force(stored_plan)

    def _first(self) -> bool:
        """Whether this worker is the first of the live ones: the one that makes the plan."""
        return bool(self._live) and self._live[0] == self.me

    def _in_force(self, stored: StoredPlan | None) -> Plan | None:
        """The stored plan's owners if it was made for the live workers this worker sees, else None."""
        return stored.owners if stored is not None and stored.in_force(self._live, self.partitions) else None

    def _make_plan(self, stored: StoredPlan | None) -> Plan:
        """A plan from the partitions' backlog, starting from the stored one (assign.balance), stored."""
        previous = stored.owners if stored is not None else {}
        backlog = backlog_of(self.client, self.address, self.partitions)
        plan = balance(self._live, backlog, previous, self.partitions, self.unit)
        moved = {i: w for i, w in plan.items() if previous.get(i) != w}
        if previous and moved:
            log.info("partition plan: %s", ", ".join(f"{i} {previous.get(i)} -> {w} (backlog {backlog[i]})"
                                                      for i, w in moved.items()))
        self.client.set(self.address.plan_key, StoredPlan(self._live, plan, self.me).dumps(), px=self.lease_ms)
        return plan

    def _heartbeat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except redis.RedisError as exc:  # keeps trying; leases it cannot renew expire and are noted lost
                log.warning("stream heartbeat failed: %s", exc)

    def _rebalance(self) -> None:
        """Between batches: drop lost partitions, give up those another worker should own, take free ones."""
        with self._lock:
            for i in self._lost & self.owned:
                log.warning("lost the lease of partition %d", i)
            self.owned -= self._lost
            self._lost.clear()
        if not self._first():  # the first worker's latest plan, without waiting for a beat
            self._plan = self._in_force(read_plan(self.client.get(self.address.plan_key), self.partitions))
        live = self._live if self.me in self._live else sorted([*self._live, self.me])
        plan = self._plan if self._plan is not None and self.me in self._live else even_share(live, self.partitions)
        wanted = {i for i, w in plan.items() if w == self.me}
        if extra := self.owned - wanted:
            self._give_up(extra)
        for i in sorted(wanted - self.owned):
            if self.client.set(self.address.lease_key(i), self.me, nx=True, px=self.lease_ms):
                self._take(i)

    def _take(self, i: int) -> None:
        """Own partition i: first move every entry still pending on another consumer (a worker that died or
        gave the partition up) to this one, so they are decided again before anything new."""
        key, cursor, moved = self.address.partition_key(i), "0-0", 0
        ensure_group(self.client, key, GROUP)
        while True:
            # (redis-py drops the cursor from a JUSTID reply, so the entries come along)
            cursor, entries = self.client.xautoclaim(key, GROUP, self.me, 0, start_id=cursor, count=1000)[:2]
            moved += len(entries)
            if cursor in (b"0-0", "0-0"):
                break
        with self._lock:
            self.owned.add(i)
        self._drained[i] = False
        self._buffers[i], self._last[i] = deque(), "0"
        if moved:
            log.info("took partition %d with %d pending entries", i, moved)

    def _give_up(self, partitions: set[int]) -> None:
        with self._lock:
            self.owned -= partitions
        self._release(keys=[self.address.lease_key(i) for i in sorted(partitions)], args=[self.me])

    # -- EventSource -------------------------------------------------------------------------------------
    def fetch(self, max_events: int, block_ms: int) -> list[Batch]:
        if time.monotonic() >= self._next_rebalance or self._lost:
            self._rebalance()
            self._next_rebalance = time.monotonic() + min(self._interval, REBALANCE_S)
        # an idle worker looks again soon: a partition handed to it must not wait out a long block
        block_ms = max(1, min(block_ms, int((self._next_rebalance - time.monotonic()) * 1000)))
        owned = sorted(self.owned)
        for i in set(self._buffers) - set(owned):  # given up or lost: the new owner reads them again
            del self._buffers[i]
        if not owned:
            time.sleep(min(block_ms / 1000, self._interval))
            return []
        if self.exact:
            return self._fetch_exact(owned, max_events, block_ms)
        pending = [i for i in owned if not self._drained.get(i, False)]
        if pending:  # entries delivered to this consumer and not acked yet: always before new ones
            batches = self._read({i: "0" for i in pending}, max_events, None)
            for i in set(pending) - {b.partition for b in batches}:
                self._drained[i] = True
            if batches:
                return batches
        return self._read({i: ">" for i in owned}, max_events, block_ms)

    def _read_owned(self, positions: dict[int, str], count: int,
                    block_ms: int | None) -> dict[int, list[tuple[bytes, dict[bytes, bytes] | None]]]:
        """XREADGROUP of each partition at its position, where this worker still holds the lease (checked
        in the same step, `_READ`): partition -> its (entry id, fields) rows, fields None for an entry
        deleted since. A partition whose lease is gone is left out and noted lost. With `block_ms`, if
        nothing came, waits up to that long for a new entry (XREAD BLOCK from the newest id), then reads
        once more."""
        got, tops = self._read_once(positions, count)
        if block_ms and tops and not any(got.values()):
            self.client.xread(tops, count=1, block=block_ms)
            got, _tops = self._read_once(positions, count)
        return got

    def _read_once(self, positions: dict[int, str],
                   count: int) -> tuple[dict[int, list[tuple[bytes, dict[bytes, bytes] | None]]], dict[str, bytes]]:
        order = list(positions)
        keys = [self.address.lease_key(i) for i in order] + [self.address.partition_key(i) for i in order]
        reply = self._read_script(keys=keys, args=[self.me, GROUP, count, *(positions[i] for i in order)])
        got, tops, lost = {}, {}, set()
        for i, part in zip(order, reply, strict=True):
            if not part[0]:
                lost.add(i)
                continue
            # a deleted entry's fields are nil, which ends the Lua table: the row is just its id
            got[i] = [(row[0], dict(zip(row[1][0::2], row[1][1::2], strict=True)) if len(row) > 1 else None)
                      for row in part[1]]
            if part[2]:
                tops[self.address.partition_key(i)] = part[2]
        if lost:
            with self._lock:
                self._lost.update(lost & self.owned)
        return got, tops

    def _read(self, ids: dict[int, str], max_events: int, block_ms: int | None) -> list[Batch]:
        """Up to max_events entries (the unit's --batch, never more), shared out between the partitions.

        A first read asks each partition for an equal share; the share the partitions that ran short left
        unused goes, in further reads (not blocking), to those that filled theirs. So a worker whose other
        partitions are drained still decides full batches of the busy one (a hot account's partition), not
        a 1/16th share each unit: the fixed cost of a unit is spread over the whole batch."""
        by_partition: dict[int, list[Entry]] = {}
        wanted, left, block = dict(ids), max_events, block_ms
        for _round in range(4):
            per = max(1, left // len(wanted))
            full = {}
            for i, rows in self._read_owned(wanted, per, block).items():
                entries = [Entry(eid.decode(), (fields or {}).get(FIELD, b"")) for eid, fields in rows]
                if entries:
                    by_partition.setdefault(i, []).extend(entries)
                    left -= len(entries)
                    if len(entries) == per:  # maybe more behind: continue after the last one read
                        full[i] = entries[-1].id if wanted[i] != ">" else ">"
            if not full or left < len(full):
                break
            wanted, block = full, None
        batches = [Batch(i, entries) for i, entries in sorted(by_partition.items())]
        with self._lock:  # a partition lost meanwhile: leave its entries pending for the new owner
            return [b for b in batches if b.partition not in self._lost]

    # -- exact streams (exact.py) ------------------------------------------------------------------------
    def _fetch_exact(self, owned: list[int], max_events: int, block_ms: int) -> list[Batch]:
        """What `walk` says may be decided now, as runs of one partition each, in stream order (so deciding
        the runs one after the other decides in the stream's order); [] while everything waits for others."""
        self._drain_wakes()  # progress read below is newer than any wake already queued
        idle = not any(self._buffers.get(i) for i in owned)
        if self._top_up(owned, max_events, block_ms if idle else None):
            self._top_up(owned, max_events, None)  # pending ones all read: now the new ones
        buffers = {i: self._buffers.setdefault(i, deque()) for i in owned}
        if not any(buffers.values()):
            return []
        # every partition's progress (one script call), unless there are so many that only those the
        # buffered entries name are worth asking for (finding them walks every buffered entry)
        parts = list(range(self.partitions)) if self.partitions <= 64 else sorted(needed(buffers))
        progress = Progress({}, {})
        if parts:
            reply = self._progress(keys=[f"{self.address.name}:done", *map(self.address.partition_key, parts)],
                                   args=parts)
            progress = Progress({p: int(d) for p, d in zip(parts, reply[0::2], strict=True) if int(d)},
                                {p: seq_of(n) for p, n in zip(parts, reply[1::2], strict=True) if n})
        taken = walk(buffers, progress, max_events)
        with self._lock:
            if not taken or self._lost & {p for p, _e in taken}:
                taken = []
        if not taken:
            self._await_progress()
            return []
        runs: list[Batch] = []
        for p, entry in taken:
            buffers[p].popleft()
            if runs and runs[-1].partition == p:
                runs[-1].entries.append(entry)
            else:
                runs.append(Batch(p, [entry]))
        return runs

    def _drain_wakes(self) -> None:
        while self._wake is not None and self._wake.get_message(timeout=0.0) is not None:
            pass

    def _await_progress(self) -> None:
        """Until some worker commits (it publishes on `NAME:progress`), or WAIT_S at most."""
        if self._wake is None:
            time.sleep(WAIT_S)
            return
        try:
            self._wake.get_message(timeout=WAIT_S)
        except redis.RedisError as exc:  # the next fetch reads progress again anyway
            log.warning("waiting for progress failed: %s", exc)
            time.sleep(WAIT_S)

    def _top_up(self, owned: list[int], max_events: int, block_ms: int | None) -> bool:
        """Read more of each owned partition whose buffer holds fewer than `max_events`: its pending entries
        after the last one read (a partition just taken), then new ones. True if a partition's pending
        entries ran out in this read (its new ones are next)."""
        ids = {i: self._last.get(i, "0") if not self._drained.get(i, False) else ">"
               for i in owned if len(self._buffers.setdefault(i, deque())) < max_events}
        if not ids:
            return False
        block = block_ms if all(v == ">" for v in ids.values()) else None
        got = self._read_owned(ids, max_events, block)
        ran_out = False
        for i, position in ids.items():
            if i not in got:  # lease lost: the new owner reads it
                continue
            rows = got[i]
            if position != ">":
                if len(rows) < max_events:
                    self._drained[i] = ran_out = True
                if rows:
                    self._last[i] = rows[-1][0].decode()
            self._buffers[i].extend(_exact_entry(eid, fields) for eid, fields in rows)
        return ran_out

    def ack(self, batches: Sequence[Batch]) -> None:
        ids: dict[int, list[str]] = {}  # one XACK per partition (an exact fetch hands out many short runs)
        for b in batches:
            ids.setdefault(b.partition, []).extend(e.id for e in b.entries)
        pipe = self.client.pipeline(transaction=False)
        for partition, entry_ids in ids.items():
            pipe.xack(self.address.partition_key(partition), GROUP, *entry_ids)
        if self.exact and batches:
            done: dict[int, int] = {}
            for b in batches:
                done[b.partition] = max(done.get(b.partition, 0), b.entries[-1].seq)
            self._advance(keys=[f"{self.address.name}:done"], args=[x for pair in done.items() for x in pair],
                          client=pipe)
            pipe.publish(f"{self.address.name}:progress", b"1")
        pipe.execute()

    def dead_letter(self, batch: Batch, entry: Entry, reason: str) -> None:
        self.client.xadd(self.address.dead_key, {"partition": batch.partition, "entry": entry.id,
                                                       "data": entry.data, "reason": reason[:2000]})

    def close(self) -> None:
        """Stop the heartbeat, give every partition back and leave the membership at once (a graceful
        stop hands partitions over without waiting for the claim timeout)."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self._wake is not None:
            with contextlib.suppress(redis.RedisError):
                self._wake.close()
        with contextlib.suppress(redis.RedisError):
            if self.owned:
                self._give_up(set(self.owned))
            self.client.zrem(self.address.workers_key, self.me)
            for i in range(self.partitions):  # a consumer with nothing pending is just clutter in XINFO
                key = self.address.partition_key(i)
                info = self.client.xpending_range(key, GROUP, "-", "+", 1, consumername=self.me)
                if not info:
                    self.client.xgroup_delconsumer(key, GROUP, self.me)
