"""The review queue: cases, their priority and service level, claims, and moderators' decisions.

Cases come from rules with a `review` action (source `rule`), escalated reports (`report`), buyer complaints
(`complaint`) -- all opened by the pipeline -- and batch findings (`detector`, opened with `open_case`).

Priority = severity x reach x confidence, each from stored facts:

- severity: the case's severity (1-5), the raising rule's `severity` (escalating a case raises it by one);
- reach: 1 + log10(1 + audience), audience being the larger of the account's friends and the largest
  `message_push` audience it has sent (a public account reaches its followers): 1 for nobody, ~5 for 10 000;
- confidence: how often moderators upheld cases from the raising rules so far, the Beta(1 + upheld,
  1 + overturned) posterior mean of their labels (0.5 before any label; the best of the case's rules).

A rule whose cases keep being overturned sinks in the queue by itself. Service level: `pack.yaml
review.sla_hours` by severity, counted from the event that opened the case.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, select, update

from clearcircle.enforcement.enforce import reverse
from clearcircle.events.schemas import EventError, parse_event
from clearcircle.policy.rules import PackSettings
from clearcircle.review.errors import Conflict, NotFound, ReviewError
from clearcircle.review.labels import OUTCOMES, add_labels, decision_payload, label_counts, labels_of, what_raised
from clearcircle.review.reputation import judge_reports, pending_reporters
from clearcircle.store import tables as t
from clearcircle.store.repository import Store, now_ms
from clearcircle.store.unit import append_audit, dumps

if TYPE_CHECKING:
    from clearcircle.service import Service

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
ACTIVE = ("open", "escalated")  # in the queue
STATUS_OF = {"uphold": "upheld", "overturn": "overturned", "escalate": "escalated"}
DECISIONS = tuple(STATUS_OF)
SOURCES = ("rule", "report", "complaint", "detector")
CASE_ACTIONS = ("label", "limit_reach", "remove", "restrict", "suspend", "ban")  # a moderator may take on uphold
REPORT_LOOKBACK_MS = 30 * DAY_MS  # reports before the case's event that its decision judges


@dataclass(frozen=True)
class Case:
    """A case as the queue shows it: the stored row plus its priority factors and service level."""

    id: int
    account: str
    event_id: str
    source: str
    rules: list[str]
    severity: int
    status: str
    created_ms: int
    claimed_by: str | None
    claimed_ms: int | None
    decided_by: str | None
    decided_ms: int | None
    decision: str | None
    reason: str | None
    priority: float
    reach: float
    confidence: float
    age_ms: int
    sla_ms: int
    overdue: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lock(query: Any, conn: Connection) -> Any:
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def _audiences(conn: Connection, accounts: list[str]) -> dict[str, int]:
    """account -> its audience: friends, or the largest push it sent, whichever is larger."""
    out: dict[str, int] = dict.fromkeys(accounts, 0)
    for chunk in (accounts[i:i + 500] for i in range(0, len(accounts), 500)):
        for row in conn.execute(select(t.accounts.c.id, t.accounts.c.state).where(t.accounts.c.id.in_(chunk))):
            out[row.id] = len(orjson.loads(row.state).get("friends", ()))
        pushes = select(t.events.c.actor, t.events.c.payload).where(
            t.events.c.actor.in_(chunk), t.events.c.type == "message_push")
        for row in conn.execute(pushes):
            audience = orjson.loads(row.payload).get("body", {}).get("audience", 0)
            out[row.actor] = max(out[row.actor], int(audience))
    return out


def reach_of(audience: int) -> float:
    return round(1 + math.log10(1 + max(0, audience)), 4)


def _cases(conn: Connection, rows: list[Any], settings: PackSettings, at_ms: int) -> list[Case]:
    audiences = _audiences(conn, sorted({r.account for r in rows}))
    precision = label_counts(conn, ("rule", "detector"))
    out = []
    for r in rows:
        rules = orjson.loads(r.rules)
        confidence = max((precision[n].confidence() if n in precision else 0.5 for n in rules), default=0.5)
        reach = reach_of(audiences.get(r.account, 0))
        sla_ms = int(settings.review.sla_hours.get(r.severity, 24) * HOUR_MS)
        age = max(0, (r.decided_ms or at_ms) - r.created_ms)
        out.append(Case(
            id=r.id, account=r.account, event_id=r.event_id, source=r.source, rules=rules, severity=r.severity,
            status=r.status, created_ms=r.created_ms, claimed_by=r.claimed_by, claimed_ms=r.claimed_ms,
            decided_by=r.decided_by, decided_ms=r.decided_ms, decision=r.decision, reason=r.reason,
            priority=round(r.severity * reach * confidence, 4), reach=reach, confidence=round(confidence, 4),
            age_ms=age, sla_ms=sla_ms, overdue=r.status in ACTIVE and age > sla_ms))
    return out


def open_case(store: Store, account: str, event_id: str, source: str, rules: list[str], severity: int,
              at_ms: int | None = None, detail: dict[str, Any] | None = None) -> int:
    """Open a case outside the pipeline (batch findings: source "detector", rules = the detector names), with
    its audit entry; returns its id. `event_id` names what it is about (a finding id for a detector)."""
    if source not in SOURCES:
        raise ReviewError(f"source: one of {', '.join(SOURCES)}")
    if not 1 <= severity <= 5:
        raise ReviewError("severity: 1 to 5")
    at = now_ms() if at_ms is None else at_ms
    with store.engine.begin() as conn:
        case_id = conn.execute(t.cases.insert().values(
            account=account, event_id=event_id, source=source, rules=dumps(list(rules)), severity=severity,
            status="open", created_ms=at)).inserted_primary_key[0]
        append_audit(conn, [(now_ms(), "case_opened", account, dumps(
            {"case_id": case_id, "event_id": event_id, "source": source, "rules": list(rules), "severity": severity,
             **({"detail": detail} if detail else {})}))])
    return int(case_id)


def list_cases(store: Store, settings: PackSettings, *, status: tuple[str, ...] = ACTIVE, account: str | None = None,
               source: str | None = None, claimed_by: str | None = None, limit: int = 100, offset: int = 0,
               at_ms: int | None = None) -> list[Case]:
    """Cases in the given states, highest priority first (then oldest first)."""
    c = t.cases.c
    query = select(t.cases).where(c.status.in_(status))
    if account is not None:
        query = query.where(c.account == account)
    if source is not None:
        query = query.where(c.source == source)
    if claimed_by is not None:
        query = query.where(c.claimed_by == claimed_by)
    at = now_ms() if at_ms is None else at_ms
    with store.reads.connect() as conn:
        cases = _cases(conn, conn.execute(query).all(), settings, at)
    cases.sort(key=lambda k: (-k.priority, k.created_ms, k.id))
    return cases[offset:offset + limit]


def get_case(store: Store, settings: PackSettings, case_id: int, at_ms: int | None = None) -> Case:
    with store.reads.connect() as conn:
        row = conn.execute(select(t.cases).where(t.cases.c.id == case_id)).first()
        if row is None:
            raise NotFound(f"no case {case_id}")
        return _cases(conn, [row], settings, now_ms() if at_ms is None else at_ms)[0]


def case_detail(store: Store, settings: PackSettings, case_id: int) -> dict[str, Any]:
    """Everything a moderator reads to decide: the case, the event and its decision (with evidence spans), the
    account's state now, the reports and complaints standing against it, the case's labels, other cases."""
    case = get_case(store, settings, case_id)
    at = now_ms()
    with store.reads.connect() as conn:
        event = conn.execute(select(t.events.c.payload).where(t.events.c.id == case.event_id)).scalar_one_or_none()
        decision = decision_payload(conn, case.event_id)
        labels = labels_of(conn, case_id=case_id)
    state = store.account_state(case.account)
    others = [k.to_dict() for k in list_cases(store, settings, account=case.account, status=(*ACTIVE, "upheld",
                                                                                             "overturned"))
              if k.id != case_id]
    return {
        "case": case.to_dict(),
        "event": None if event is None else orjson.loads(event),
        "decision": decision,
        "account": None if state is None else {
            "view": state.view(at).model_dump(),
            "state": state.model_dump(exclude={"friends", "ledger", "ledger_base", "reports", "complaints"}),
            "reports": {who: m.model_dump() for who, m in sorted(state.reports.items())},
            "complaints": {who: m.model_dump() for who, m in sorted(state.complaints.items())},
        },
        "labels": labels,
        "other_cases": others,
    }


def _claim(service: Service, case_id: int, moderator: str, force: bool, by: str) -> Case:
    if not moderator.strip():
        raise ReviewError("moderator: required")
    at = now_ms()
    hold_ms = int(service.pack.settings.review.claim_minutes * 60_000)
    with service.store.engine.begin() as conn:
        row = conn.execute(_lock(select(t.cases).where(t.cases.c.id == case_id), conn)).first()
        if row is None:
            raise NotFound(f"no case {case_id}")
        if row.status not in ACTIVE:
            raise Conflict(f"case {case_id} is {row.status}: only open or escalated cases are claimed")
        held = row.claimed_by is not None and row.claimed_by != moderator and at < (row.claimed_ms or 0) + hold_ms
        if held and not force:
            raise Conflict(f"case {case_id} is claimed by {row.claimed_by!r} (assign it to take it over)")
        if row.claimed_by != moderator or force:
            conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(claimed_by=moderator, claimed_ms=at))
            append_audit(conn, [(at, "case_assigned" if force else "case_claimed", row.account, dumps(
                {"case_id": case_id, "moderator": moderator, "by": by, "previous": row.claimed_by}))])
    return get_case(service.store, service.pack.settings, case_id)


def claim_case(service: Service, case_id: int, moderator: str) -> Case:
    """Take a case: refused (Conflict) while another moderator's claim holds (pack.yaml review.claim_minutes);
    claiming one's own case again renews nothing and changes nothing."""
    return _claim(service, case_id, moderator, False, moderator)


def assign_case(service: Service, case_id: int, moderator: str, by: str) -> Case:
    """Give a case to a moderator, whoever held it (a lead's step; audited with who did it)."""
    return _claim(service, case_id, moderator, True, by)


def decide_case(service: Service, case_id: int, decision: str, reason: str, by: str, *, action: str | None = None,
                days: int | None = None) -> dict[str, Any]:
    """uphold / overturn / escalate a case, with a reason, in one transaction with its audit entries.

    Every decision labels the rules, shadow rules and signals that raised the case. Uphold and overturn also
    count in the reputation of the accounts whose reports or complaints of the account it judged. Overturn
    reverses what the case's event did to the account (measures, strikes, its case mark), as if it had never
    happened. Escalate sends the case back to the queue one severity higher, unclaimed. Deciding a decided
    case again the same way changes nothing (`changed: false`); another way is a Conflict.

    Uphold may take an `action` (label, limit_reach, remove, restrict, suspend, ban; `days` for the time-boxed
    ones): it is applied as a `moderator_action` event through the pipeline, after the decision commits, with
    the id `case-<id>-<action>`, so it is decided, audited, counted in transparency reports and appealable like
    any event, and a retry of the same decision applies it exactly once.
    """
    if decision not in DECISIONS:
        raise ReviewError(f"decision: one of {', '.join(DECISIONS)}")
    if not reason or not reason.strip():
        raise ReviewError("reason: required")
    if action is not None and (decision != "uphold" or action not in CASE_ACTIONS):
        raise ReviewError(f"action: only with uphold, one of {', '.join(CASE_ACTIONS)}")
    result = _decide(service, case_id, decision, reason, by)
    if action is not None:
        result["action"] = _act(service, case_id, result["account"], action, days, reason, by)
    return result


def _act(service: Service, case_id: int, account: str, action: str, days: int | None, reason: str,
         by: str) -> dict[str, Any]:
    """The moderator's measure on an upheld case, as a moderator_action event (idempotent by its id)."""
    body: dict[str, Any] = {"target": account, "action": action, "reason": reason[:500]}
    if days is not None:
        body["duration_days"] = days
    try:
        event = parse_event({"id": f"case-{case_id}-{action}", "type": "moderator_action", "actor": by[:128],
                             "occurred_at": datetime.now(UTC).isoformat(), "body": body})
    except EventError as exc:
        raise ReviewError(f"action: {exc.errors[0]['field']}: {exc.errors[0]['message']}") from None
    return service.pipeline.submit([event])[0].decision


def _decide(service: Service, case_id: int, decision: str, reason: str, by: str) -> dict[str, Any]:
    at = now_ms()
    settings = service.pack.settings
    hold_ms = int(settings.review.claim_minutes * 60_000)
    with service.pipeline.staff_unit() as uow:
        conn = uow.conn
        row = conn.execute(_lock(select(t.cases).where(t.cases.c.id == case_id), conn)).first()
        if row is None:
            raise NotFound(f"no case {case_id}")
        if row.status not in ACTIVE:
            if row.decision == decision:
                return {"case_id": case_id, "account": row.account, "changed": False, "status": row.status,
                        "labels": 0, "reporters": [], "changes": []}
            raise Conflict(f"case {case_id} was already decided: {row.status}")
        if row.claimed_by not in (None, by) and at < (row.claimed_ms or 0) + hold_ms:
            raise Conflict(f"case {case_id} is claimed by {row.claimed_by!r}")
        rules = orjson.loads(row.rules)
        payload = decision_payload(conn, row.event_id)
        labels = add_labels(conn, what_raised(payload, rules, row.source), OUTCOMES[decision], at, by,
                            case_id=case_id)
        judged: list[str] = []
        changes: list[dict[str, Any]] = []
        if decision in ("uphold", "overturn"):
            target = uow.touch(row.account)
            since = row.created_ms - REPORT_LOOKBACK_MS
            reporters = {who: uow.touch(who) for who in pending_reporters(target, since, at)}
            judged = judge_reports(target, reporters, case_id, decision == "uphold", since, at)
        if decision == "overturn":
            for change in reverse(uow.touch(row.account), row.event_id, f"case:{case_id}", settings):
                entry = {"event_id": f"case:{case_id}", **change.model_dump(mode="json")}
                uow.add_audit(at, "state_change", change.account, dumps(entry))
                changes.append(entry)
        values: dict[str, Any] = {"status": STATUS_OF[decision], "decision": decision, "reason": reason,
                                  "decided_by": by, "decided_ms": at}
        if decision == "escalate":
            values.update(severity=min(5, row.severity + 1), claimed_by=None, claimed_ms=None)
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(**values))
        uow.add_audit(at, "case_decided", row.account, dumps(
            {"case_id": case_id, "event_id": row.event_id, "decision": decision, "reason": reason, "by": by,
             "rules": rules, "labels": labels, "reporters": judged,
             "reversed": [c["detail"]["changed"] for c in changes]}))
    return {"case_id": case_id, "account": row.account, "changed": True, "status": STATUS_OF[decision],
            "labels": labels, "reporters": judged, "changes": changes}
