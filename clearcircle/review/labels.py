"""Moderator decisions as labels on what raised a case, and rule precision measured from them.

Deciding a case labels each rule that raised it (kind `rule`, or `detector` for batch findings), each shadow
rule that also fired on the case's event (`shadow_rule`: how shadow rules get a precision before they go live)
and each signal the raising rules read (`signal`), with the outcome `upheld`, `overturned` or `escalated`.
Deciding an appeal labels the rules behind the appealed action the same way. Precision is upheld / (upheld +
overturned); escalations are recorded but are not an outcome yet.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from clearcircle.store import tables as t

OUTCOMES = {"uphold": "upheld", "overturn": "overturned", "escalate": "escalated"}


@dataclass(frozen=True)
class LabelCounts:
    """How the cases a rule (or signal, detector) raised were decided."""

    name: str
    upheld: int = 0
    overturned: int = 0
    escalated: int = 0

    @property
    def decided(self) -> int:
        return self.upheld + self.overturned

    @property
    def precision(self) -> float | None:
        """upheld / decided; None with no decided case (unknown, not zero)."""
        return self.upheld / self.decided if self.decided else None

    def confidence(self, prior: tuple[float, float] = (1.0, 1.0)) -> float:
        """The Beta posterior mean of a case from this source being upheld (0.5 with no labels)."""
        a, b = prior[0] + self.upheld, prior[1] + self.overturned
        return a / (a + b)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decided": self.decided, "precision": self.precision}


def what_raised(decision: dict[str, Any] | None, rules: list[str], source: str) -> list[tuple[str, str]]:
    """(kind, name) labels for a case: its rules, the shadow rules on its event, the signals its rules read."""
    kind = "detector" if source == "detector" else "rule"
    out = [(kind, r) for r in rules]
    if decision is not None:
        out += [("shadow_rule", r) for r in decision.get("shadow_rules", [])]
        raised = set(rules)
        out += sorted({("signal", e["signal"]) for e in decision.get("evidence", [])
                       if e.get("rule") in raised and e.get("signal") and e["signal"] != "text.evidence"})
    return list(dict.fromkeys(out))


def add_labels(conn: Connection, labels: list[tuple[str, str]], outcome: str, at_ms: int, by: str, *,
               case_id: int | None = None, appeal_id: int | None = None) -> int:
    """Store one label per (kind, name); returns how many."""
    if not labels:
        return 0
    conn.execute(t.case_labels.insert(), [
        {"case_id": case_id, "appeal_id": appeal_id, "kind": kind, "name": name, "outcome": outcome, "at_ms": at_ms,
         "by": by} for kind, name in labels])
    return len(labels)


def label_counts(conn: Connection, kinds: tuple[str, ...] = ("rule", "shadow_rule", "detector"),
                 since_ms: int | None = None) -> dict[str, LabelCounts]:
    """name -> counts over labels of the given kinds (a rule's enforce and shadow labels add up)."""
    c = t.case_labels.c
    query = select(c.name, c.outcome, func.count()).where(c.kind.in_(kinds)).group_by(c.name, c.outcome)
    if since_ms is not None:
        query = query.where(c.at_ms >= since_ms)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for name, outcome, n in conn.execute(query):
        counts[name][outcome] = n
    return {name: LabelCounts(name, v.get("upheld", 0), v.get("overturned", 0), v.get("escalated", 0))
            for name, v in sorted(counts.items())}


def labels_of(conn: Connection, *, case_id: int | None = None, appeal_id: int | None = None) -> list[dict[str, Any]]:
    c = t.case_labels.c
    query = select(t.case_labels).order_by(c.id)
    query = query.where(c.case_id == case_id) if case_id is not None else query.where(c.appeal_id == appeal_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def decision_payload(conn: Connection, event_id: str) -> dict[str, Any] | None:
    raw = conn.execute(select(t.decisions.c.payload).where(t.decisions.c.event_id == event_id)).scalar_one_or_none()
    return None if raw is None else orjson.loads(raw)
