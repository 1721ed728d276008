"""The store: the one place that reads and writes the database for the faces (API, CLI) and the pipeline."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import desc, func, select, update

from clearcircle.audit.chain import AuditRow, Finding, verify
from clearcircle.enforcement.state import AccountState
from clearcircle.store import tables as t
from clearcircle.store.db import check_current, make_engine, upgrade
from clearcircle.store.unit import UnitOfWork, WorkingSet, append_audit, dumps, read_head

ROLES = ("integrator", "moderator", "admin")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: str
    name: str
    created_ms: int
    revoked_ms: int | None


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def upgrade(self) -> None:
        upgrade(self.engine)

    def check(self) -> None:
        check_current(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def unit(self, ws: WorkingSet | None = None) -> Iterator[UnitOfWork]:
        """One transaction: everything the unit buffered is flushed on success, nothing on error.

        A working set kept from the previous unit is reused only if no one else wrote since (see
        WorkingSet); on any error it is emptied, since its in-memory state may be ahead of the database.
        """
        ws = ws or WorkingSet()
        try:
            with self.engine.begin() as conn:
                start = read_head(conn)
                if ws.head is None or ws.head != start or ws.too_big():
                    ws.reset()
                uow = UnitOfWork(conn, ws)
                yield uow
                before, after = uow.flush(now_ms())
            ws.head = after if before == start else None
        except BaseException:
            ws.reset()
            raise

    # -- reads --------------------------------------------------------------------------------------
    def decision(self, event_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            payload = conn.execute(
                select(t.decisions.c.payload).where(t.decisions.c.event_id == event_id)
            ).scalar_one_or_none()
        return None if payload is None else orjson.loads(payload)

    def account_state(self, account_id: str) -> AccountState | None:
        with self.engine.connect() as conn:
            raw = conn.execute(select(t.accounts.c.state).where(t.accounts.c.id == account_id)).scalar_one_or_none()
        return None if raw is None else AccountState.model_validate_json(raw)

    def account_history(self, account_id: str, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
        """Decisions about the account and the state changes made to it, newest first."""
        with self.engine.connect() as conn:
            changes = conn.execute(
                select(t.audit.c.seq, t.audit.c.at_ms, t.audit.c.kind, t.audit.c.payload)
                .where(t.audit.c.subject == account_id)
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
        with self.engine.connect() as conn:
            return {
                name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in (("events", t.events), ("decisions", t.decisions), ("accounts", t.accounts),
                                    ("audit", t.audit), ("cases", t.cases))
            }

    def verdict_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.decisions.c.verdict, func.count()).group_by(t.decisions.c.verdict))
            return {r[0]: r[1] for r in rows}

    def audit_rows(self, batch: int = 5000) -> Iterator[AuditRow]:
        """Every audit row in sequence order, streamed in pages."""
        last = 0
        while True:
            with self.engine.connect() as conn:
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
            with self.engine.connect() as conn:
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

    def audit_head(self) -> tuple[int, str] | None:
        with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
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
        """The role of an active key, or None (unknown or revoked)."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(t.api_keys.c.role).where(t.api_keys.c.key_hash == self._key_hash(secret),
                                                t.api_keys.c.active.is_(True))
            ).scalar_one_or_none()
