"""The store: the one place that reads and writes the database for the faces (API, CLI) and the pipeline."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, desc, event, func, select, update
from sqlalchemy.exc import IntegrityError

from clearcircle.audit.chain import AuditRow, Finding, verify
from clearcircle.enforcement.state import AccountState
from clearcircle.merchants import registry as merchant_registry
from clearcircle.merchants.registry import MerchantRecord
from clearcircle.store import tables as t
from clearcircle.store.checkpoint import SAFETY_PAGES, WalCheckpointer
from clearcircle.store.db import StoreError, check_current, is_read_only, make_engine, reads, sqlite_file, upgrade
from clearcircle.store.driver import Driver
from clearcircle.store.unit import (
    SQL_HITS,
    HitStore,
    UnitOfWork,
    WorkingSet,
    append_audit,
    dumps,
    lock_head,
    read_head,
)
from clearcircle.store.writer_lock import WriterLock

if TYPE_CHECKING:
    from clearcircle.store.redis_counters import RedisHits

# compliance: merchant licences (S10) and campaign overlays (S12)
ROLES = ("integrator", "moderator", "admin", "compliance")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: str
    name: str
    created_ms: int
    revoked_ms: int | None


def _locked_campaign(conn: Any, name: str) -> Any:
    """The campaign row, locked for this transaction on PostgreSQL (SQLite's BEGIN IMMEDIATE already is)."""
    query = select(t.campaigns).where(t.campaigns.c.name == name)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


class StoredCounters:
    """The stored counter hits as a CounterReader, for reads outside the pipeline (API, CLI)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def count(self, key: str, name: str, since_ms: int, until_ms: int, distinct: bool = False) -> int:
        return self.store.count_hits(key, name, since_ms, until_ms, distinct)


class Store:
    def __init__(self, url: str, redis_url: str | None = None) -> None:
        """`redis_url`: keep counter hits in Redis (store.redis_counters) instead of the counter_hits table."""
        self.url = url
        database = sqlite_file(url)  # None: PostgreSQL, or SQLite in memory
        # SQLite files: the log copied on a thread, not in commits; writers queue for the write lock in the kernel
        self.checkpoints = WalCheckpointer(database) if database else None
        self.writer = WriterLock(database) if database else None
        self.engine = make_engine(url, wal_autocheckpoint=SAFETY_PAGES if self.checkpoints else 1000)
        if self.checkpoints is not None:
            event.listen(self.engine, "commit", self._committed)
        self.reads = reads(self.engine)  # read-only transactions (no write lock on SQLite)
        self._head_exists = False  # the audit head row, once seen (SQLite snapshot units cannot create it)
        self._held: Connection | None = None  # SQLite: the connection snapshot units keep (_snapshot)
        self._held_lock = threading.Lock()
        self.hits: HitStore = SQL_HITS
        self.redis: RedisHits | None = None
        if redis_url:
            from clearcircle.store.redis_counters import RedisHits, RedisUnavailable

            try:
                self.redis = RedisHits(redis_url)
            except RedisUnavailable as exc:
                self.close()
                raise StoreError(str(exc)) from None
            self.hits = self.redis

    def upgrade(self) -> None:
        upgrade(self.engine)

    def check(self) -> None:
        check_current(self.engine)

    def _committed(self, conn: Connection) -> None:
        """A write transaction committed (engine event): its pages are for the checkpoint thread to copy."""
        if self.checkpoints is not None and not is_read_only(conn):
            self.checkpoints.committed()

    def close(self) -> None:
        with self._held_lock:
            if self._held is not None:
                self._held.close()
                self._held = None
        if self.checkpoints is not None:
            self.checkpoints.close()
        if self.writer is not None:
            self.writer.close()
        self.engine.dispose()
        if self.redis is not None:
            self.redis.close()

    @contextmanager
    def unit(self, ws: WorkingSet | None = None, events: bool = False, exclusive: bool = False
             ) -> Iterator[UnitOfWork]:
        """One transaction: everything the unit buffered is flushed on success, nothing on error.

        `events`: a unit deciding events. It is optimistic unless `exclusive`: it reads and decides without
        holding the audit head, and locks it only to write (UnitOfWork.flush), so several workers decide at
        once; it may raise UnitConflict, after which the caller runs it again exclusive. What it changed goes
        to the unit log. Any other unit (a staff step, a detector run) holds the head from its start. On
        SQLite an optimistic unit decides in a read transaction (a WAL snapshot, no lock) and takes the write
        lock when it flushes (BEGIN IMMEDIATE): server processes sharing one file decide side by side and
        queue only to write.

        The working set kept from the previous unit drops what other workers changed since (WorkingSet.sync);
        on any error it is emptied, since its in-memory state may be ahead of the database.
        """
        ws = ws or WorkingSet()
        try:
            optimistic = events and not exclusive
            snapshot = optimistic and self.engine.dialect.name == "sqlite"  # BEGIN, then BEGIN IMMEDIATE to write
            if snapshot and not self._head_exists:  # a new store's head row is made under the write lock
                with self.engine.begin() as conn:
                    lock_head(conn)
                self._head_exists = True
            queued: list[WriterLock] = []  # the write queue, once this unit has joined it (until it ends)

            def before_write() -> None:  # a snapshot unit, about to take the write lock
                if self.checkpoints is not None:
                    self.checkpoints.settle()
                if self.writer is not None:
                    self.writer.acquire()
                    queued.append(self.writer)

            try:
                with self._snapshot() if snapshot else self.engine.begin() as conn:
                    head = read_head(conn) if optimistic else lock_head(conn)
                    forgotten = ws.sync(Driver(conn), head[0])
                    uow = UnitOfWork(conn, ws, self.hits, head=None if optimistic else head, start=head[0],
                                     forgotten=forgotten, logged=events, snapshot=snapshot,
                                     before_write=before_write)
                    yield uow
                    uow.flush(now_ms())
            finally:  # committed or rolled back: the next writer's turn
                for lock in queued:
                    lock.release()
            if snapshot and self.checkpoints is not None:  # written in a transaction begun read-only
                self.checkpoints.committed()
            ws.seq = (uow.end if uow.end is not None else head[0]) if uow.complete else None
            self.hits.committed(uow.flushed_hits)  # Redis: only hits of a committed batch count
        except BaseException:
            ws.reset()
            raise

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A read (snapshot) transaction for an optimistic unit on SQLite, on a connection kept between units.

        Why: a single-event unit is a few events, and taking a connection from the pool and giving it back
        (with the pool's reset) was ~5% of its CPU. One unit at a time keeps it (a pipeline decides one at a
        time); a concurrent one takes a pooled connection as before. After an error the kept connection is
        closed, and the next unit opens another."""
        if not self._held_lock.acquire(blocking=False):
            with self.reads.begin() as conn:
                yield conn
            return
        try:
            conn = self._held = self._held or self.reads.connect()
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                self._held = None
                conn.close()
                raise
        finally:
            self._held_lock.release()

    # -- reads --------------------------------------------------------------------------------------
    def decision(self, event_id: str) -> dict[str, Any] | None:
        with self.reads.connect() as conn:
            payload = conn.execute(
                select(t.decisions.c.payload).where(t.decisions.c.event_id == event_id)
            ).scalar_one_or_none()
        return None if payload is None else orjson.loads(payload)

    def account_state(self, account_id: str) -> AccountState | None:
        with self.reads.connect() as conn:
            raw = conn.execute(select(t.accounts.c.state).where(t.accounts.c.id == account_id)).scalar_one_or_none()
        return None if raw is None else AccountState.model_validate_json(raw)

    def account_history(self, account_id: str, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
        """Decisions about the account and the state changes made to it, newest first."""
        with self.reads.connect() as conn:
            changes = conn.execute(
                select(t.audit.c.seq, t.audit.c.at_ms, t.audit.c.kind, t.audit.c.payload)
                .where(t.audit.c.subject == account_id, t.NOT_DECISION)  # by ix_audit_subject
                .order_by(desc(t.audit.c.seq))
                .limit(limit)
            ).all()
            decisions = conn.execute(
                select(t.decisions.c.payload).where(t.decisions.c.subject == account_id)
                .order_by(desc(t.decisions.c.occurred_ms)).limit(limit)
            ).scalars().all()
        return {
            "decisions": [orjson.loads(p) for p in decisions],
            "changes": [{"seq": r.seq, "at_ms": r.at_ms, "kind": r.kind, **orjson.loads(r.payload)} for r in changes],
        }

    def counts(self) -> dict[str, int]:
        with self.reads.connect() as conn:
            return {
                name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in (("events", t.events), ("decisions", t.decisions), ("accounts", t.accounts),
                                    ("audit", t.audit), ("cases", t.cases))
            }

    def verdict_counts(self) -> dict[str, int]:
        with self.reads.connect() as conn:
            rows = conn.execute(select(t.decisions.c.verdict, func.count()).group_by(t.decisions.c.verdict))
            return {r[0]: r[1] for r in rows}

    def audit_rows(self, batch: int = 5000) -> Iterator[AuditRow]:
        """Every audit row in sequence order, streamed in pages."""
        last = 0
        while True:
            with self.reads.connect() as conn:
                rows = conn.execute(
                    select(t.audit).where(t.audit.c.seq > last).order_by(t.audit.c.seq).limit(batch)
                ).all()
            if not rows:
                return
            for r in rows:
                yield AuditRow(r.seq, r.at_ms, r.kind, r.subject, r.payload, r.prev_hash, r.hash)
            last = rows[-1].seq

    def decision_payloads(self, batch: int = 5000) -> Iterator[tuple[str, str]]:
        """(event id, stored payload) of every decision, for `audit verify`."""
        last = ""
        while True:
            with self.reads.connect() as conn:
                rows = conn.execute(
                    select(t.decisions.c.event_id, t.decisions.c.payload).where(t.decisions.c.event_id > last)
                    .order_by(t.decisions.c.event_id).limit(batch)
                ).all()
            if not rows:
                return
            yield from ((r.event_id, r.payload) for r in rows)
            last = rows[-1].event_id

    def verify_audit(self) -> tuple[int, list[Finding]]:
        """The audit chain and the decisions it seals; see clearcircle.audit.chain.verify."""
        return verify(self.audit_rows(), self.audit_head(), self.decision_payloads())

    def count_hits(self, key: str, name: str, since_ms: int, until_ms: int, distinct: bool = False) -> int:
        """A CounterReader over the stored hits (window (since, until]), for reads outside the pipeline."""
        if self.redis is not None:
            return self.redis.count(key, name, since_ms, until_ms, distinct)
        column = func.count(func.distinct(t.counter_hits.c.member)) if distinct else func.count()
        with self.reads.connect() as conn:
            return conn.execute(
                select(column).select_from(t.counter_hits).where(
                    t.counter_hits.c.key == key, t.counter_hits.c.name == name,
                    t.counter_hits.c.at_ms > since_ms, t.counter_hits.c.at_ms <= until_ms)
            ).scalar_one()

    def audit_head(self) -> tuple[int, str] | None:
        with self.reads.connect() as conn:
            row = conn.execute(select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)).first()
        return None if row is None else (row.seq, row.hash)

    def audit(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        """Append one audit row on its own (admin operations: keys, pack changes)."""
        with self.engine.begin() as conn:
            append_audit(conn, [(now_ms(), kind, subject, dumps(payload))])

    # -- API keys -----------------------------------------------------------------------------------
    @staticmethod
    def _key_hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def create_key(self, role: str, name: str) -> tuple[ApiKey, str]:
        """A new key; the secret is returned once and only its hash is stored."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        key_id = secrets.token_hex(6)
        secret = f"cc_{key_id}_{secrets.token_urlsafe(24)}"
        key = ApiKey(key_id, role, name, now_ms(), None)
        with self.engine.begin() as conn:
            conn.execute(t.api_keys.insert().values(id=key_id, key_hash=self._key_hash(secret), role=role, name=name,
                                                    created_ms=key.created_ms, revoked_ms=None, active=True))
            append_audit(conn, [(key.created_ms, "api_key_created", key_id, dumps({"role": role, "name": name}))])
        return key, secret

    def list_keys(self) -> list[ApiKey]:
        with self.reads.connect() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.created_ms)).all()
        return [ApiKey(r.id, r.role, r.name, r.created_ms, r.revoked_ms) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        at = now_ms()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t.api_keys).where(t.api_keys.c.id == key_id, t.api_keys.c.active.is_(True))
                .values(active=False, revoked_ms=at)
            ).rowcount
            if done:
                append_audit(conn, [(at, "api_key_revoked", key_id, dumps({}))])
        return bool(done)

    def key_role(self, secret: str) -> str | None:
        """The role of an active key, or None (unknown or revoked). Read each time, never cached (a revoked key
        stops at once, whichever process revoked it)."""
        return self.key_roles([secret])[secret]

    def key_roles(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Each key's role (None: unknown or revoked) in one indexed look-up through the driver: the API checks
        the keys of a group of single events together, on the thread that decides them (api/coalesce.py)."""
        by_hash = {self._key_hash(k): k for k in set(keys)}
        roles: dict[str, str | None] = dict.fromkeys(by_hash.values())
        if not by_hash:
            return roles
        with self.reads.connect() as conn:
            driver = Driver(conn)
            where, params = driver.among("key_hash", list(by_hash))
            for key_hash, role in driver.rows(f"SELECT key_hash, role FROM api_keys WHERE {where} AND active = ?",
                                              [*params, True]):
                roles[by_hash[key_hash]] = str(role)
        return roles

    @property
    def blocking_reads_are_cheap(self) -> bool:
        """SQLite reads are local and take microseconds: the API runs them on the event loop, not a thread."""
        return self.engine.dialect.name == "sqlite"

    # -- merchant registry (S10) ----------------------------------------------------------------------------------
    # The steps themselves (states, transitions, validation) are clearcircle.merchants.registry's; the store runs
    # each in one transaction with its history row and its audit entry.

    def merchant(self, account: str) -> MerchantRecord | None:
        with self.reads.connect() as conn:
            return merchant_registry.get(conn, account)

    def merchant_list(self, state: str | None = None, at_ms: int | None = None, limit: int = 100,
                      offset: int = 0) -> list[MerchantRecord]:
        """Records by account; `state` filters on the state at `at_ms` (default now), expired included."""
        at_ms = now_ms() if at_ms is None else at_ms
        query = select(t.merchants).order_by(t.merchants.c.account)
        if state is not None:
            stored = "verified" if state == "expired" else state
            query = query.where(t.merchants.c.status == stored)
        with self.reads.connect() as conn:
            records = [merchant_registry.MerchantRecord.from_row(r) for r in conn.execute(query)]
        if state is not None:
            records = [r for r in records if r.state_at(at_ms) == state]
        return records[offset : offset + limit]

    def merchant_history(self, account: str) -> list[dict[str, Any]]:
        with self.reads.connect() as conn:
            return merchant_registry.history(conn, account)

    def merchant_apply(self, account: str, company_name: str, credit_code: str, food_licence: str | None,
                       categories: list[str], by: str) -> merchant_registry.Step:
        """An application filed by staff (not an event): the same step as the pipeline's, at the current time."""
        at = now_ms()
        with self.engine.begin() as conn:
            current = merchant_registry.get(conn, account, lock=True)
            step = merchant_registry.application(current, account, company_name, credit_code, food_licence,
                                                 categories, f"staff:{by}:{at}", at)
            self._merchant_write(conn, step, current is not None, at, by)
        return step

    def merchant_step(self, account: str, action: str, by: str, *, reason: str | None = None,
                      licence_expires: date | None = None) -> merchant_registry.Step:
        """verify / reject / revoke one record. Raises merchant_registry.NotFound, TransitionError (the state
        does not allow it) or ValueError (a bad argument)."""
        at = now_ms()
        with self.engine.begin() as conn:
            current = merchant_registry.get(conn, account, lock=True)
            if current is None:
                raise merchant_registry.NotFound(account)
            if action == "verify":
                step = merchant_registry.verify(current, licence_expires, at)
            elif action in ("reject", "revoke"):
                if not reason or not reason.strip():
                    raise ValueError(f"reason: required to {action}")
                fn = merchant_registry.reject if action == "reject" else merchant_registry.revoke
                step = fn(current, reason, at)
            else:
                raise ValueError(f"unknown merchant step {action!r}")
            self._merchant_write(conn, step, True, at, by)
        return step

    @staticmethod
    def _merchant_write(conn: Connection, step: merchant_registry.Step, existed: bool, at: int, by: str) -> None:
        if not step.changed:
            return
        merchant_registry.save(conn, step.record, existed)
        merchant_registry.add_history(conn, step.record, step.step, at, by, step.detail)
        append_audit(conn, [(at, f"merchant_{step.step}", step.record.account,
                             dumps({"status": step.record.status, "by": by, **step.detail}))])

    # -- campaigns (S12) ----------------------------------------------------------------------------------------------
    # Specs arrive validated (clearcircle.policy.campaigns.parse_campaign); the store keeps them, their history
    # and an audit entry per change. The pipeline reads them through CampaignRows.

    def campaign(self, name: str) -> dict[str, Any] | None:
        with self.reads.connect() as conn:
            row = conn.execute(select(t.campaigns).where(t.campaigns.c.name == name)).first()
        return None if row is None else _campaign(row)

    def campaign_list(self) -> list[dict[str, Any]]:
        with self.reads.connect() as conn:
            rows = conn.execute(select(t.campaigns).order_by(t.campaigns.c.starts_ms, t.campaigns.c.name)).all()
        return [_campaign(r) for r in rows]

    def campaign_history(self, name: str) -> list[dict[str, Any]]:
        with self.reads.connect() as conn:
            rows = conn.execute(select(t.campaign_history).where(t.campaign_history.c.name == name)
                                .order_by(t.campaign_history.c.seq)).all()
        return [{"seq": r.seq, "at_ms": r.at_ms, "change": r.change, "revision": r.revision, "by": r.by,
                 "spec": orjson.loads(r.spec)} for r in rows]

    def campaign_save(self, spec: dict[str, Any], starts_ms: int, ends_ms: int, by: str,
                      mode: str = "upsert") -> tuple[dict[str, Any], str]:
        """Create (`create`), change (`change`) or either (`upsert`) a campaign. Returns (campaign, change):
        change is created / changed / unchanged. Raises CampaignConflict: exists (create), unknown (change),
        or already ended (an ended campaign is final: decisions name it as it was)."""
        name, at = spec["name"], now_ms()
        text = dumps(spec)
        with self.engine.begin() as conn:
            row = _locked_campaign(conn, name)
            if row is None:
                if mode == "change":
                    raise CampaignConflict(f"no campaign {name!r}", missing=True)
                revision, change = 1, "created"
                try:
                    with conn.begin_nested():
                        conn.execute(t.campaigns.insert().values(
                            name=name, spec=text, starts_ms=starts_ms, ends_ms=ends_ms, ended_ms=None,
                            revision=revision, created_ms=at, updated_ms=at))
                except IntegrityError:
                    raise CampaignConflict(f"campaign {name!r} already exists") from None
            else:
                if mode == "create":
                    raise CampaignConflict(f"campaign {name!r} already exists (change it, or pick a new name)")
                if row.ended_ms is not None:
                    raise CampaignConflict(f"campaign {name!r} was ended; an ended campaign is final (create a "
                                           "new one)")
                if row.spec == text:
                    return _campaign(row), "unchanged"
                revision, change = row.revision + 1, "changed"
                conn.execute(update(t.campaigns).where(t.campaigns.c.name == name).values(
                    spec=text, starts_ms=starts_ms, ends_ms=ends_ms, revision=revision, updated_ms=at))
            conn.execute(t.campaign_history.insert().values(name=name, at_ms=at, change=change, revision=revision,
                                                            by=by, spec=text))
            append_audit(conn, [(at, f"campaign_{change}", f"campaign:{name}",
                                 dumps({"revision": revision, "by": by, "spec": spec}))])
            saved = conn.execute(select(t.campaigns).where(t.campaigns.c.name == name)).first()
        return _campaign(saved), change

    def campaign_end(self, name: str, by: str) -> tuple[dict[str, Any], bool]:
        """End a campaign now (it stops applying to events stamped from now on). Returns (campaign, whether
        this call ended it: False when it was already ended). Raises CampaignConflict if there is none."""
        at = now_ms()
        with self.engine.begin() as conn:
            row = _locked_campaign(conn, name)
            if row is None:
                raise CampaignConflict(f"no campaign {name!r}", missing=True)
            if row.ended_ms is not None:
                return _campaign(row), False
            revision = row.revision + 1
            conn.execute(update(t.campaigns).where(t.campaigns.c.name == name)
                         .values(ended_ms=at, revision=revision, updated_ms=at))
            conn.execute(t.campaign_history.insert().values(name=name, at_ms=at, change="ended", revision=revision,
                                                            by=by, spec=row.spec))
            append_audit(conn, [(at, "campaign_ended", f"campaign:{name}", dumps({"revision": revision, "by": by}))])
            saved = conn.execute(select(t.campaigns).where(t.campaigns.c.name == name)).first()
        return _campaign(saved), True

    # -- published policy packs (issue 10) ---------------------------------------------------------------------------
    # The pack arrives validated (policy.published.read_pack / the API's pack files); every worker's pipeline reads
    # the newest through PublishedPacks at its next batch (policy.published.PackBook).

    def publish_pack(self, name: str, version: str, files: dict[str, str], by: str) -> tuple[int, bool]:
        """Make a validated pack the one every worker decides with, with an audit entry. Returns (seq, published):
        publishing the version already in force adds nothing (False); an older version again is a rollback."""
        at = now_ms()
        with self.engine.begin() as conn:
            lock_head(conn)  # publishers (and batches) serialise on the audit head: seq order is commit order
            newest = PublishedPacks(conn).newest()
            if newest is not None and newest[1] == version:
                return newest[0], False
            seq = conn.execute(t.published_packs.insert().values(
                version=version, name=name, files=dumps(files), published_ms=at, by=by)).inserted_primary_key[0]
            append_audit(conn, [(at, "pack_published", f"pack:{version}",
                                 dumps({"seq": seq, "name": name, "by": by, "files": sorted(files)}))])
        return seq, True

    def published_pack(self, seq: int | None = None) -> dict[str, Any] | None:
        """The newest published pack (or publication `seq`) with its files; None when there is none."""
        query = select(t.published_packs)
        query = query.where(t.published_packs.c.seq == seq) if seq is not None else query.order_by(
            desc(t.published_packs.c.seq)).limit(1)
        with self.reads.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else {"seq": row.seq, "version": row.version, "name": row.name,
                                         "files": orjson.loads(row.files), "published_ms": row.published_ms,
                                         "by": row.by}


class CampaignConflict(ValueError):
    """A campaign change the stored campaigns do not allow (HTTP 409; `missing`: 404)."""

    def __init__(self, message: str, missing: bool = False) -> None:
        self.missing = missing
        super().__init__(message)


def _campaign(row: Any) -> dict[str, Any]:
    return {"name": row.name, "spec": orjson.loads(row.spec), "starts_ms": row.starts_ms, "ends_ms": row.ends_ms,
            "ended_ms": row.ended_ms, "revision": row.revision, "created_ms": row.created_ms,
            "updated_ms": row.updated_ms}


class CampaignRows:
    """The pipeline's read of the campaigns, on the batch's own connection (see policy.campaigns.CampaignBook).

    The version is the length of the append-only history: it grows with every committed change whatever the
    commit order of concurrent writers, which a max(seq) or max(updated_ms) would not guarantee.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def version(self) -> int:
        return self.conn.execute(select(func.count()).select_from(t.campaign_history)).scalar_one()

    def rows(self) -> list[dict[str, Any]]:
        return [{"spec": orjson.loads(r.spec), "created_ms": r.created_ms, "ended_ms": r.ended_ms}
                for r in self.conn.execute(select(t.campaigns).order_by(t.campaigns.c.name))]


class PublishedPacks:
    """The newest published pack, read on the given connection (a batch's own, or a read): the PackSource of
    policy.published.PackBook. One indexed row per batch; the files only when the newest changed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def newest(self) -> tuple[int, str] | None:
        row = self.conn.execute(select(t.published_packs.c.seq, t.published_packs.c.version)
                                .order_by(desc(t.published_packs.c.seq)).limit(1)).first()
        return None if row is None else (row.seq, row.version)

    def files(self, seq: int) -> dict[str, str]:
        return orjson.loads(self.conn.execute(select(t.published_packs.c.files)
                                              .where(t.published_packs.c.seq == seq)).scalar_one())
