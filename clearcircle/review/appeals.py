"""Appeals and reversals (S15): an account owner appeals what one event did to their account; a moderator
upholds or overturns it; an overturn reverses it completely.

The reversal is enforcement's (`enforce.reverse`): the account's measures, strikes and case marks are rebuilt
from its ledger of requests without the appealed event's, through the one action registry and the strike
ladder, so the account ends exactly as it would have been had the action never been taken (a label cleared,
reach restored, a restriction or ban lifted, the event's strikes gone along with any escalation they caused).
Filing and deciding each add an audit entry in the same transaction as the change; the reversal's state
changes are audited like the pipeline's (`state_change`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from clearcircle.enforcement.enforce import reverse
from clearcircle.review.errors import Conflict, NotFound, ReviewError
from clearcircle.review.labels import add_labels, decision_payload
from clearcircle.review.reputation import overturn_judgement, reporters_judged_by
from clearcircle.store import tables as t
from clearcircle.store.repository import Store, now_ms
from clearcircle.store.unit import UnitOfWork, append_audit, dumps

if TYPE_CHECKING:
    from clearcircle.service import Service

APPEAL_DECISIONS = ("uphold", "overturn")
STATUSES = ("open", "upheld", "overturned")
# what an appeal can be about: a change enforcement made (case_opened is a moderator's question, not an action)
APPEALABLE = frozenset({"label", "limit_reach", "restrict", "suspend", "ban", "strike"})


@dataclass(frozen=True)
class Appeal:
    id: int
    account: str
    event_id: str
    statement: str
    filed_by: str
    filed_ms: int
    status: str
    decided_by: str | None
    decided_ms: int | None
    reason: str | None
    changes: list[dict[str, Any]]

    @classmethod
    def from_row(cls, r: Any) -> Appeal:
        return cls(r.id, r.account, r.event_id, r.statement, r.filed_by, r.filed_ms, r.status, r.decided_by,
                   r.decided_ms, r.reason, orjson.loads(r.changes) if r.changes else [])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lock(query: Any, conn: Connection) -> Any:
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def appealed_actions(conn: Connection, event_id: str, account: str) -> list[dict[str, Any]]:
    """The changes `event_id` made to the account that an appeal can reverse: from the event's decision, or,
    for a step that is not an event (a batch finding's labels, `finding-<id>`), from its audit entries."""
    decision = decision_payload(conn, event_id)
    if decision is not None:
        changes = decision.get("actions", [])
    else:
        # NOT_DECISION adds nothing to kind == state_change, but lets the planner use ix_audit_subject
        payloads = conn.execute(select(t.audit.c.payload).where(t.audit.c.kind == "state_change", t.NOT_DECISION,
                                                                t.audit.c.subject == account)).scalars()
        changes = [c for c in map(orjson.loads, payloads) if c.get("event_id") == event_id]
    return [a for a in changes if a["account"] == account and a["action"] in APPEALABLE]


def file_appeal(store: Store, account: str, event_id: str, statement: str, by: str) -> tuple[Appeal, bool]:
    """File the account owner's appeal of what event `event_id` did to `account`. Returns (appeal, created):
    an open appeal of the same action is returned as is (a retry files nothing twice); one already decided is
    a Conflict (an appeal is decided once). NotFound if the event did nothing appealable to the account."""
    if not statement or not statement.strip():
        raise ReviewError("statement: required")
    try:
        return _file(store, account, event_id, statement, by)
    except IntegrityError:  # filed at the same moment by another request: one appeal per action
        return _file(store, account, event_id, statement, by)


def _file(store: Store, account: str, event_id: str, statement: str, by: str) -> tuple[Appeal, bool]:
    at = now_ms()
    with store.engine.begin() as conn:
        if not appealed_actions(conn, event_id, account):
            raise NotFound(f"event {event_id!r} applied no action to account {account!r} that can be appealed")
        c = t.appeals.c
        existing = conn.execute(_lock(select(t.appeals).where(c.account == account, c.event_id == event_id)
                                      .order_by(c.id), conn)).first()
        if existing is not None:
            if existing.status == "open":
                return Appeal.from_row(existing), False
            raise Conflict(f"the appeal of event {event_id!r} for {account!r} was decided: {existing.status}")
        appeal_id = conn.execute(t.appeals.insert().values(
            account=account, event_id=event_id, statement=statement, filed_by=by, filed_ms=at, status="open"
        )).inserted_primary_key[0]
        append_audit(conn, [(at, "appeal_filed", account, dumps(
            {"appeal_id": appeal_id, "event_id": event_id, "statement": statement, "by": by}))])
        row = conn.execute(select(t.appeals).where(c.id == appeal_id)).first()
    return Appeal.from_row(row), True


def get_appeal(store: Store, appeal_id: int) -> Appeal:
    with store.reads.connect() as conn:
        row = conn.execute(select(t.appeals).where(t.appeals.c.id == appeal_id)).first()
    if row is None:
        raise NotFound(f"no appeal {appeal_id}")
    return Appeal.from_row(row)


def list_appeals(store: Store, status: str | None = "open", account: str | None = None, limit: int = 100,
                 offset: int = 0) -> list[Appeal]:
    """Appeals oldest first (the order they are answered in); `status` None for all."""
    if status is not None and status not in STATUSES:
        raise ReviewError(f"status: one of {', '.join(STATUSES)}")
    c = t.appeals.c
    query = select(t.appeals).order_by(c.filed_ms, c.id).limit(limit).offset(offset)
    if status is not None:
        query = query.where(c.status == status)
    if account is not None:
        query = query.where(c.account == account)
    with store.reads.connect() as conn:
        return [Appeal.from_row(r) for r in conn.execute(query)]


def decide_appeal(service: Service, appeal_id: int, decision: str, reason: str, by: str) -> tuple[Appeal, bool]:
    """Uphold or overturn an appeal, with a reason. Returns (appeal, changed).

    Overturn reverses the appealed event's effect on the account (see the module docstring). Both outcomes
    label the rules behind the action (precision), and are audited with the reversal in one transaction.
    The same decision again changes nothing; the other one is a Conflict.
    """
    if decision not in APPEAL_DECISIONS:
        raise ReviewError(f"decision: one of {', '.join(APPEAL_DECISIONS)}")
    if not reason or not reason.strip():
        raise ReviewError("reason: required")
    at = now_ms()
    status = "upheld" if decision == "uphold" else "overturned"
    with service.pipeline.staff_unit() as uow:
        conn = uow.conn
        row = conn.execute(_lock(select(t.appeals).where(t.appeals.c.id == appeal_id), conn)).first()
        if row is None:
            raise NotFound(f"no appeal {appeal_id}")
        if row.status != "open":
            if row.status == status:
                return Appeal.from_row(row), False
            raise Conflict(f"appeal {appeal_id} was already decided: {row.status}")
        actions = appealed_actions(conn, row.event_id, row.account)
        rules = sorted({a["rule"] for a in actions if not a["rule"].startswith("strike-ladder")})
        # the appeal upholds or overturns the rules behind the action (a ladder step is the ladder's)
        add_labels(conn, [("rule", r) for r in rules], status, at, by, appeal_id=appeal_id)
        changes: list[dict[str, Any]] = []
        corrected: list[str] = []
        if decision == "overturn":
            for change in reverse(uow.touch(row.account), row.event_id, f"appeal:{appeal_id}",
                                  service.pack.settings):
                entry = {"event_id": f"appeal:{appeal_id}", **change.model_dump(mode="json")}
                uow.add_audit(at, "state_change", change.account, dumps(entry))
                changes.append(entry)
            corrected = _correct_reporters(uow, row.event_id)
        conn.execute(update(t.appeals).where(t.appeals.c.id == appeal_id).values(
            status=status, decided_by=by, decided_ms=at, reason=reason, changes=dumps(changes)))
        uow.add_audit(at, "appeal_decided", row.account, dumps(
            {"appeal_id": appeal_id, "event_id": row.event_id, "decision": decision, "reason": reason, "by": by,
             "rules": rules, "reversed": [c["detail"]["changed"] for c in changes],
             **({"reporters_corrected": corrected} if corrected else {})}))
    return get_appeal(service.store, appeal_id), True


_CASE_MEASURE = re.compile(r"case-(\d+)-[a-z_]+")  # review.queue's id for an upheld case's measure


def _correct_reporters(uow: UnitOfWork, event_id: str) -> list[str]:
    """If the overturned action was the measure of an upheld case, the reporters that case judged upheld
    get the overturn counted instead (reputation.overturn_judgement)."""
    found = _CASE_MEASURE.fullmatch(event_id)
    if found is None:
        return []
    case = uow.conn.execute(select(t.cases.c.account, t.cases.c.decision)
                            .where(t.cases.c.id == int(found.group(1)))).first()
    if case is None or case.decision != "uphold":
        return []
    target = uow.touch(case.account)
    reporters = {who: uow.touch(who) for who in reporters_judged_by(target, int(found.group(1)))}
    return overturn_judgement(target, reporters, int(found.group(1)))
