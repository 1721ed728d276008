"""A unit of work: everything one batch of events reads and writes, committed in one transaction.

It prefetches what the batch needs (earlier decisions, account states, counter windows) in a few queries,
serves signals from memory, and writes events, decisions, state, counters, cases and audit rows together:
all of them or none, so a crash never leaves a decision without its actions or its audit entry.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection

from clearcircle.audit.chain import GENESIS, row_hash
from clearcircle.enforcement.state import AccountState, AccountView
from clearcircle.store import tables as t
from clearcircle.store.driver import Driver, marks

_CHUNK = 500
_LOG_KEEP = 2_000_000  # audit rows of unit log kept: a working set older than that is emptied, not synced
_PRUNE_EVERY = 100_000  # prune the unit log each time the audit seq passes a multiple of this


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _insert(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Plain bulk insert through the driver: the hot path skips SQLAlchemy's per-row parameter work."""
    if not rows:
        return
    cols = list(rows[0])
    get = itemgetter(*cols)
    Driver(conn).insert(table.name, cols, (get(r) if len(cols) > 1 else (get(r),) for r in rows))


_UPSERT_ACCOUNTS = (" ON CONFLICT (id) DO UPDATE SET account_type = excluded.account_type, "
                    "registered_ms = excluded.registered_ms, updated_ms = excluded.updated_ms, state = excluded.state")


def _upsert_accounts(conn: Connection, rows: list[tuple[str, str | None, int | None, int, str]]) -> None:
    """Account states written back (id, account_type, registered_ms, updated_ms, state). PostgreSQL: one
    statement over five arrays (one execution, not one per account: less CPU on both sides); SQLite: one
    execution per row, which is cheap in process."""
    if not rows:
        return
    driver = Driver(conn)
    if driver.postgresql:  # %b: arrays sent in binary (psycopg's text format escapes each JSON text in Python)
        driver.run("INSERT INTO accounts (id, account_type, registered_ms, updated_ms, state) "
                   "SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::text[])"
                   + _UPSERT_ACCOUNTS, [list(column) for column in zip(*rows, strict=True)])
        return
    driver.many("INSERT INTO accounts (id, account_type, registered_ms, updated_ms, state) VALUES (?, ?, ?, ?, ?)"
                + _UPSERT_ACCOUNTS, rows)


def _insert_new(conn: Connection, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """Rows not already there (by `keys`); the same SQL on both, through the driver."""
    if not rows:
        return
    cols = list(rows[0])
    Driver(conn).many(f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({marks(len(cols))}) "
                      f"ON CONFLICT ({', '.join(keys)}) DO NOTHING", [tuple(r[c] for c in cols) for r in rows])


class HitStore(Protocol):
    """Where counter hits live between batches: the SQL table (SqlHits, the default) or Redis
    (store.redis_counters.RedisHits). The unit of work keeps the batch's windows in memory either way."""

    def load(self, conn: Connection, keys: list[str], since_ms: int) -> Iterable[tuple[str, str, int, str]]:
        """(key, counter name, at_ms, member) of every hit of the keys at or after since_ms."""
        ...

    def write(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """The batch's hits, inside its transaction."""
        ...

    def committed(self, rows: list[dict[str, Any]]) -> None:
        """The batch's hits, once its transaction has committed."""
        ...


class SqlHits:
    """Counter hits in the `counter_hits` table, written in the batch's own transaction."""

    def load(self, conn: Connection, keys: list[str], since_ms: int) -> Iterable[tuple[str, str, int, str]]:
        driver = Driver(conn)
        for chunk in _chunks(keys):
            where, params = driver.among("key", chunk)
            yield from driver.rows(f"SELECT key, name, at_ms, member FROM counter_hits WHERE {where} AND at_ms >= ?",
                                   [*params, since_ms])

    def write(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        _insert(conn, t.counter_hits, rows)

    def committed(self, rows: list[dict[str, Any]]) -> None:
        pass


SQL_HITS = SqlHits()


class UnitConflict(RuntimeError):
    """Another worker's unit changed an account this unit also changed, in a way the two cannot be merged (both
    made more than mergeable changes: friends gained, an earlier first-seen time). The unit rolls back; the
    pipeline decides the batch again under the lock."""


class WorkingSet:
    """What units of work read (account states, counter windows, identifier links), kept between units.

    `seq` is the audit seq it is current as of. Before the next unit (`sync`) it drops only the accounts and
    counter keys that other workers' units changed since (the unit log), or empties itself when something
    else wrote in between (a staff step, a publication: their effects are not itemised). Bounded: it empties
    itself when it holds too many accounts, counter hits or bytes of account state (states grow with an
    account's history: a process serving the same accounts for hours must not grow with them).
    """

    MAX_ACCOUNTS = 50_000
    MAX_HITS = 60_000
    MAX_KEYS = 50_000  # counter keys with a window held (items and photo hashes come and go)
    MAX_STATE_BYTES = 3_000_000  # of the states' JSON; the objects take a few times that

    def __init__(self) -> None:
        self.seq: int | None = None
        self.reset()

    def reset(self) -> None:
        self.seq = None
        self.accounts: dict[str, AccountState] = {}
        self.windows: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
        self.names: dict[str, set[str]] = defaultdict(set)  # counter names held per key
        self.loaded_since: dict[str, int] = {}
        self.links_by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.links_by_account: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.links_loaded: set[str] = set()
        self.pairs_loaded: set[tuple[str, str]] = set()
        self.hits = 0
        self.state_sizes: dict[str, int] = {}
        self.state_bytes = 0
        # keys other workers hit in the span last synced: dropped once more at the next sync, since with
        # Redis counters a unit's hits land just after its commit (store.redis_counters)
        self.recent_keys: set[str] = set()

    def sized(self, account_id: str, json_bytes: int) -> None:
        """The size of an account's state as last read or written."""
        self.state_bytes += json_bytes - self.state_sizes.get(account_id, 0)
        self.state_sizes[account_id] = json_bytes

    def too_big(self) -> bool:
        return (len(self.accounts) > self.MAX_ACCOUNTS or self.hits > self.MAX_HITS
                or len(self.loaded_since) > self.MAX_KEYS or self.state_bytes > self.MAX_STATE_BYTES)

    def forget(self, accounts: Iterable[str], keys: Iterable[str],
               links: Iterable[tuple[str, str]] = ()) -> None:
        """Drop what another writer changed: read again from the store on next need."""
        for pair in links:  # an account joined this identifier: who shares it is read again
            self.pairs_loaded.discard(pair)
            for account_id in self.links_by_pair.pop(pair, ()):
                self.links_by_account.get(account_id, set()).discard(pair)
                self.links_loaded.discard(account_id)
        for account_id in accounts:
            self.accounts.pop(account_id, None)
            self.state_bytes -= self.state_sizes.pop(account_id, 0)
        for key in keys:
            if self.loaded_since.pop(key, None) is None:
                continue
            for name in self.names.pop(key, ()):
                self.hits -= len(self.windows.pop((key, name), ()))

    def sync(self, driver: Driver, seq: int) -> set[str] | None:
        """Bring the set up to audit seq `seq` before a unit: the accounts dropped because other units changed
        them, or None when it had to be emptied (nothing kept; anything cached beside it must be re-read)."""
        if self.seq is None or self.too_big() or seq < self.seq:
            self.reset()
            return None
        if seq == self.seq:
            self.forget((), self.recent_keys)
            self.recent_keys = set()
            return set()
        changes = read_log(driver, self.seq, seq)
        if not changes.complete:
            self.reset()
            return None
        accounts = changes.accounts | changes.friends
        self.forget(accounts, changes.keys | self.recent_keys, changes.links)
        self.recent_keys = changes.keys
        return accounts


@dataclass
class Changes:
    """What units of events changed in an audit span: accounts changed in full, accounts changed only in
    mergeable ways (`friends`: friends gained, an earlier first-seen time), counter keys hit; `complete` is
    False when some write in the span was not such a unit (or its log rows were pruned), so nothing says what
    it changed."""

    accounts: set[str] = field(default_factory=set)
    friends: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    links: set[tuple[str, str]] = field(default_factory=set)
    complete: bool = True


def read_log(driver: Driver, after: int, upto: int) -> Changes:
    """The unit log's account of the audit span (after, upto]."""
    out = Changes()
    covered = 0
    for seq, since, accounts, friends, keys, links in driver.rows(
            "SELECT seq, since_seq, accounts, friends, keys, links FROM unit_log WHERE seq > ? AND seq <= ?",
            [after, upto]):
        covered += seq - since
        out.accounts.update(orjson.loads(accounts))
        out.friends.update(orjson.loads(friends))
        out.keys.update(orjson.loads(keys))
        out.links.update((kind, value) for kind, value in orjson.loads(links))
    out.friends -= out.accounts
    out.complete = covered == upto - after
    return out


class UnitOfWork:
    """Reads for signals (CounterReader, Lookups) and buffered writes for one batch."""

    def __init__(self, conn: Connection, ws: WorkingSet | None = None, hits: HitStore = SQL_HITS,
                 head: tuple[int, str] | None = None, start: int | None = None,
                 forgotten: set[str] | None = None, logged: bool = False, snapshot: bool = False,
                 before_write: Callable[[], None] | None = None) -> None:
        self.conn = conn
        self.driver = Driver(conn)
        # (seq, hash) of the audit head when the unit holds its lock from the start (lock_head); None: an
        # optimistic unit, which reads and decides unlocked and locks the head only to write (flush)
        self.head = head
        self.start = start  # audit seq read at the start; None: no other unit to check against
        # nothing but units of events wrote since the working set was current (WorkingSet.sync did not empty it)
        self.reused = forgotten is not None
        self.forgotten = forgotten or set()  # accounts the working set dropped at the start: others changed them
        self.logged = logged  # a unit of events: what it changes goes to the unit log for other workers
        # SQLite, optimistic: reads in a snapshot (deferred BEGIN) until flush swaps it for the write lock
        self.snapshot = snapshot
        self.before_write = before_write  # called before the snapshot takes the write lock (store.checkpoint)
        self.hits = hits
        self.ws = ws = ws or WorkingSet()
        self.accounts = ws.accounts
        self.windows = ws.windows
        self.links_by_pair = ws.links_by_pair
        self.links_by_account = ws.links_by_account
        self.dirty: set[str] = set()
        self.touched: set[str] = set()  # changed through touch (in full), not only by mergeable changes
        self.friend_adds: dict[str, list[str]] = defaultdict(list)
        self.seen_at: dict[str, int] = {}  # the earliest first-seen time this unit gave an account
        self.decided: dict[str, bytes] = {}
        self.event_rows: list[dict[str, Any]] = []
        self.decision_rows: list[dict[str, Any]] = []
        self.hit_rows: list[dict[str, Any]] = []
        self.flushed_hits: list[dict[str, Any]] = []  # for HitStore.committed once the transaction commits
        self.link_rows: list[dict[str, Any]] = []
        self.case_rows: list[dict[str, Any]] = []
        self.audit: list[tuple[int, str, str, str]] = []  # at_ms, kind, subject, payload
        self.end: int | None = None  # audit seq after the unit's rows, once flushed
        self.complete = True  # flush saw only units of events between start and its own rows

    # -- prefetch -------------------------------------------------------------------------------------
    def prefetch(self, event_ids: list[str], account_ids: set[str], counter_keys: set[str], since_ms: int) -> None:
        for chunk in _chunks(event_ids):
            where, params = self.driver.among("event_id", chunk)
            rows = self.driver.rows(f"SELECT event_id, payload FROM decisions WHERE {where}", params)
            self.decided.update((event_id, payload.encode()) for event_id, payload in rows)
        self._load_accounts(account_ids)
        since_of = self.ws.loaded_since
        keys = sorted(k for k in counter_keys if since_of.get(k, since_ms + 1) > since_ms)
        self.ws.forget((), keys)  # (re)load from the new bound: drop what was there
        touched = set()
        names = self.ws.names
        for key, name, at_ms, member in self.hits.load(self.conn, keys, since_ms):
            self.windows[(key, name)].append((at_ms, member))
            names[key].add(name)
            touched.add((key, name))
            self.ws.hits += 1
        for pair in touched:
            self.windows[pair].sort()
        since_of.update(dict.fromkeys(keys, since_ms))

    def _read_states(self, ids: list[str]) -> dict[str, AccountState]:
        """Stored states of the accounts (those with one), read from the database, recording their sizes."""
        out = {}
        for chunk in _chunks(ids):
            where, params = self.driver.among("id", chunk)
            for account_id, state in self.driver.rows(f"SELECT id, state FROM accounts WHERE {where}", params):
                out[account_id] = AccountState.model_validate_json(state)
                self.ws.sized(account_id, len(state))
        return out

    def _load_accounts(self, ids: Iterable[str]) -> None:
        accounts = self.accounts  # not `set - keys()`: that walks every key of the working set
        missing = sorted({i for i in ids if i not in accounts})
        self.accounts.update(self._read_states(missing))
        for account_id in missing:
            self.accounts.setdefault(account_id, AccountState(account_id=account_id))

    # -- reads (signals) ------------------------------------------------------------------------------
    def state(self, account_id: str) -> AccountState:
        if account_id not in self.accounts:
            self._load_accounts([account_id])
        return self.accounts[account_id]

    def touch(self, account_id: str) -> AccountState:
        """The state, marked to be written back."""
        self.dirty.add(account_id)
        self.touched.add(account_id)
        return self.state(account_id)

    def add_friend(self, account_id: str, friend: str) -> None:
        """`friend` joins the account's friends (kept sorted, so the list does not depend on which worker
        added whom first). Gaining a friend is the one change another worker's unit may make to an account
        this worker's units change too, so it is kept apart: such units merge at commit (flush)."""
        friends = self.state(account_id).friends
        if friend in friends:
            return
        bisect.insort(friends, friend)  # a list stored unsorted by an older version stays a set all the same
        self.dirty.add(account_id)
        self.friend_adds[account_id].append(friend)

    def seen(self, account_id: str, at_ms: int) -> None:
        """The account acted at `at_ms`: its first-seen time becomes that if it is earlier. Like gaining a
        friend, a mergeable change (the earliest of two is what running the two units in either order gives):
        a report's reporter is seen in the target's partition while its own partition changes it in full."""
        state = self.state(account_id)
        if state.first_seen_ms is not None and state.first_seen_ms <= at_ms:
            return
        state.first_seen_ms = at_ms
        self.dirty.add(account_id)
        self.seen_at[account_id] = at_ms

    def account(self, account_id: str, at_ms: int) -> AccountView:
        return self.state(account_id).view(at_ms)

    def _window(self, key: str, name: str, since_ms: int, until_ms: int) -> list[tuple[int, str]]:
        """The key's hits of one counter in (since, until], oldest first, loaded on first need."""
        if self.ws.loaded_since.get(key, since_ms + 1) > since_ms:
            self.prefetch([], set(), {key}, since_ms)
        window = self.windows.get((key, name), [])
        lo = bisect.bisect_right(window, (since_ms, "\U0010ffff"))
        hi = bisect.bisect_right(window, (until_ms, "\U0010ffff"))
        return window[lo:hi]

    def count(self, key: str, name: str, since_ms: int, until_ms: int, distinct: bool = False) -> int:
        hits = self._window(key, name, since_ms, until_ms)
        return len({member for _at, member in hits}) if distinct else len(hits)

    def members(self, key: str, name: str, since_ms: int, until_ms: int) -> list[str]:
        """The members of the key's hits in (since, until], oldest first (near-duplicate photos read them)."""
        return [member for _at, member in self._window(key, name, since_ms, until_ms)]

    def mutual_friends(self, a: str, b: str) -> int:
        small, big = sorted((self.state(a).friends, self.state(b).friends), key=len)
        return len(set(small).intersection(big)) if small else 0

    def linked_accounts(self, account_id: str) -> list[tuple[str, str]]:
        self.prefetch_links(list(self.links_by_account.get(account_id, ())), [account_id])
        out = {(kind, other) for kind, value in self.links_by_account.get(account_id, ())
               for other in self.links_by_pair.get((kind, value), ()) if other != account_id}
        return sorted(out)

    def prefetch_linked(self, accounts: Iterable[str]) -> None:
        """The identifier links of the batch's accounts and the states of the accounts they link to, in a
        few queries, not one per event (ban-evasion signals read them for every actor)."""
        accounts = sorted(set(accounts))
        self.prefetch_links([p for a in accounts for p in self.links_by_account.get(a, ())], accounts)
        self._load_accounts({other for a in accounts for pair in self.links_by_account.get(a, ())
                             for other in self.links_by_pair.get(pair, ())})

    def prefetch_links(self, pairs: list[tuple[str, str]], accounts: list[str]) -> None:
        """Load identifier links by value and by account, so ban-evasion look-ups run from memory."""
        new_accounts = sorted(set(accounts) - self.ws.links_loaded)
        driver = self.driver
        for chunk in _chunks(new_accounts):
            where, params = driver.among("account", chunk)
            pairs.extend(driver.rows(f"SELECT kind, value_hash FROM identity_links WHERE {where}", params))
        self.ws.links_loaded.update(new_accounts)
        for chunk in _chunks(sorted(set(pairs) - self.ws.pairs_loaded)):
            self.ws.pairs_loaded.update(chunk)
            where, params = driver.among_pairs("kind", "value_hash", chunk)
            for kind, value_hash, account in driver.rows(
                    f"SELECT kind, value_hash, account FROM identity_links WHERE {where}", params):
                self._index_link(kind, value_hash, account)

    def _index_link(self, kind: str, value_hash: str, account_id: str) -> None:
        self.links_by_pair[(kind, value_hash)].add(account_id)
        self.links_by_account[account_id].add((kind, value_hash))

    # -- writes ---------------------------------------------------------------------------------------
    def record_hit(self, key: str, name: str, at_ms: int, event_id: str, member: str) -> None:
        if key not in self.ws.loaded_since:
            self.prefetch([], set(), {key}, at_ms - 31 * 86_400_000)
        self.ws.hits += 1
        self.ws.names[key].add(name)
        bisect.insort(self.windows[(key, name)], (at_ms, member))
        self.hit_rows.append({"key": key, "name": name, "event_id": event_id, "at_ms": at_ms, "member": member})

    def link(self, kind: str, value_hash: str, account_id: str, at_ms: int) -> None:
        self.prefetch_links([(kind, value_hash)], [account_id])
        self._index_link(kind, value_hash, account_id)
        self.link_rows.append({"kind": kind, "value_hash": value_hash, "account": account_id, "linked_ms": at_ms})

    def add_event(self, row: dict[str, Any]) -> None:
        self.event_rows.append(row)

    def add_decision(self, row: dict[str, Any]) -> None:
        self.decision_rows.append(row)
        self.decided[row["event_id"]] = row["payload"].encode()

    def add_case(self, row: dict[str, Any]) -> None:
        self.case_rows.append(row)

    def add_audit(self, at_ms: int, kind: str, subject: str, payload: str) -> None:
        self.audit.append((at_ms, kind, subject, payload))

    def flush(self, now_ms: int) -> tuple[str, str]:
        """Write everything buffered; the caller's transaction makes it atomic. Returns the audit head
        (before, after) this unit's rows.

        Rows no other unit writes (events, decisions, hits, links, cases) go first; then the audit head is
        locked (if the unit does not hold it yet), other workers' units since this one started are checked
        against what this one changed (`_merge`), and the account states, the unit log row and the audit rows
        are written: the head stays locked only for that last part."""
        conn = self.conn
        if self.snapshot:  # a read transaction cannot become a writer once others wrote: end it, lock to write
            self.snapshot = False
            self.driver.run("COMMIT")
            if self.before_write is not None:
                self.before_write()
            self.driver.run("BEGIN IMMEDIATE")
        _insert(conn, t.events, self.event_rows)
        _insert(conn, t.decisions, self.decision_rows)
        self.hits.write(conn, self.hit_rows)
        self.flushed_hits += self.hit_rows
        _insert_new(conn, t.identity_links, self.link_rows, ["kind", "value_hash", "account"])
        if self.case_rows:
            conn.execute(t.cases.insert(), self.case_rows)
        head = self.head
        if head is None and (self.audit or self.dirty):
            head = _head(self.driver)
            if self.start is not None and head[0] != self.start:
                self._merge(self.start, head[0])
        rows = []
        for s in (self.accounts[a] for a in sorted(self.dirty)):
            state_json = s.stored_json()
            self.ws.sized(s.account_id, len(state_json))
            rows.append((s.account_id, s.account_type, s.registered_ms, now_ms, state_json))
        _upsert_accounts(conn, rows)
        if self.logged and self.audit and head is not None:
            full = sorted(self.touched)
            friends = sorted(self.dirty - self.touched)
            keys = sorted({r["key"] for r in self.hit_rows})
            links = sorted({(r["kind"], r["value_hash"]) for r in self.link_rows})
            self.driver.run("INSERT INTO unit_log (seq, since_seq, accounts, friends, keys, links) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [head[0] + len(self.audit), head[0], orjson.dumps(full).decode(),
                             orjson.dumps(friends).decode(), orjson.dumps(keys).decode(),
                             orjson.dumps(links).decode()])
            if (head[0] + len(self.audit)) // _PRUNE_EVERY != head[0] // _PRUNE_EVERY:
                self.driver.run("DELETE FROM unit_log WHERE seq <= ?", [head[0] - _LOG_KEEP])
        heads = append_audit(conn, self.audit, head)
        if head is not None:  # a later flush in the same unit chains on from here
            self.head = (head[0] + len(self.audit), heads[1])
            self.end = self.head[0]
        self.event_rows, self.decision_rows, self.hit_rows, self.link_rows, self.case_rows = [], [], [], [], []
        self.audit, self.dirty, self.touched, self.friend_adds = [], set(), set(), defaultdict(list)
        self.seen_at = {}
        return heads

    def _merge(self, start: int, now: int) -> None:
        """Other workers' units committed between this unit's start and now. An account both changed is
        merged when one side made only mergeable changes (friend lists are sets and a first-seen time is the
        earliest: the union, the minimum, is what running the two units one after the other gives); if both
        changed more, UnitConflict. What else they changed is dropped from the working set, which is then
        current as of `now` plus this unit's own writes."""
        others = read_log(self.driver, start, now)
        if not others.complete:
            self.complete = False
        clash = self.dirty & (others.accounts | others.friends)
        if self.dirty & others.accounts & self.touched or (not others.complete and self.dirty):
            raise UnitConflict(f"{len(clash)} account(s) changed by another worker meanwhile")
        if clash:
            current = self._read_states(sorted(clash))
            for account_id in clash:
                stored = current.get(account_id) or AccountState(account_id=account_id)
                if account_id in self.touched:  # ours changed in full, theirs only mergeable changes
                    mine = self.accounts[account_id]
                    mine.friends = sorted(set(mine.friends).union(stored.friends))
                    mine.first_seen_ms = _earliest(mine.first_seen_ms, stored.first_seen_ms)
                else:  # ours only mergeable changes: theirs, plus our friends and first-seen time
                    friends = set(stored.friends).union(self.friend_adds[account_id])
                    stored.friends = sorted(friends)
                    stored.first_seen_ms = _earliest(stored.first_seen_ms, self.seen_at.get(account_id))
                    self.accounts[account_id] = stored
        self.ws.forget((others.accounts | others.friends) - self.dirty, others.keys, others.links)
        self.ws.recent_keys |= others.keys


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def lock_head(conn: Connection) -> tuple[int, str]:
    """The audit head (seq, hash) at the start of a unit of work, locked until it commits.

    Every write appends to the audit chain, so holding the head row for the whole unit serialises units
    across processes: a unit reads account states and counters only after the previous unit committed,
    and can never write back a state another process changed meanwhile (no lost update). SQLite's
    BEGIN IMMEDIATE gives the same; on PostgreSQL it is the row lock (FOR UPDATE).
    """
    return _head(Driver(conn))


def read_head(conn: Connection) -> tuple[int, str]:
    """The audit head (seq, hash), not locked: where an optimistic unit starts from."""
    return _head(Driver(conn), lock=False)


def _head(driver: Driver, lock: bool = True) -> tuple[int, str]:
    sql = "SELECT seq, hash FROM audit_head WHERE id = 1" + (" FOR UPDATE" if driver.postgresql and lock else "")
    head = driver.one(sql)
    if head is None:  # a new store: create the head row, so there is a row to lock
        driver.run("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?) ON CONFLICT (id) DO NOTHING", [GENESIS])
        head = driver.one(sql)
        assert head is not None
    return int(head[0]), str(head[1])


def append_audit(conn: Connection, entries: list[tuple[int, str, str, str]],
                 head: tuple[int, str] | None = None) -> tuple[str, str]:
    """Chain and append audit rows; the head row is locked so concurrent writers serialise.
    `head`: the (seq, hash) this transaction already locked (lock_head), else it is read here.
    Returns the head hash before and after."""
    driver = Driver(conn)
    seq, prev = head if head is not None else _head(driver)
    before = prev
    if not entries:
        return before, before
    rows = []
    for at_ms, kind, subject, payload in entries:
        seq += 1
        digest = row_hash(prev, at_ms, kind, subject, payload)
        rows.append((seq, at_ms, kind, subject, payload, prev, digest))
        prev = digest
    driver.insert("audit", ("seq", "at_ms", "kind", "subject", "payload", "prev_hash", "hash"), rows)
    driver.run("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", [seq, prev])
    return before, prev


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()

