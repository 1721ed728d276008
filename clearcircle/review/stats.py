"""Rule statistics from stored decisions and moderator labels: the live figures of every rule, shadow rules
included (how a shadow rule earns its way to enforce mode), the same figures a backtest shows."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy import select

from clearcircle.policy.pack import Pack
from clearcircle.review.labels import LabelCounts, label_counts
from clearcircle.store import tables as t
from clearcircle.store.repository import Store

_PAGE = 5000


@dataclass(frozen=True)
class RuleStats:
    """One rule's figures over a period: hits in enforce and shadow mode, the accounts hit, and how the cases
    and appeals it raised were decided (precision = upheld / decided; None before any decision)."""

    rule: str
    mode: str  # the rule's mode in the pack ("gone" for a rule that is no longer in it)
    category: str
    hits: int
    shadow_hits: int
    accounts: int
    upheld: int
    overturned: int
    precision: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stored_hits(store: Store, since_ms: int | None = None, until_ms: int | None = None,
                event_ids: set[str] | None = None) -> tuple[Counter[str], Counter[str], dict[str, set[str]]]:
    """(enforce hits, shadow hits, rule -> subjects) over stored decisions with occurred_ms in [since, until)."""
    hits: Counter[str] = Counter()
    shadow: Counter[str] = Counter()
    subjects: dict[str, set[str]] = defaultdict(set)
    d = t.decisions.c
    last = ""
    while True:
        query = select(d.event_id, d.subject, d.payload).where(d.event_id > last).order_by(d.event_id).limit(_PAGE)
        if since_ms is not None:
            query = query.where(d.occurred_ms >= since_ms)
        if until_ms is not None:
            query = query.where(d.occurred_ms < until_ms)
        with store.reads.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            break
        for r in rows:
            if event_ids is not None and r.event_id not in event_ids:
                continue
            payload = orjson.loads(r.payload)
            for rule in payload.get("rules", ()):
                hits[rule] += 1
                subjects[rule].add(r.subject)
            for rule in payload.get("shadow_rules", ()):
                shadow[rule] += 1
                subjects[rule].add(r.subject)
        last = rows[-1].event_id
    return hits, shadow, subjects


def precision_by_rule(store: Store) -> dict[str, LabelCounts]:
    """rule (or detector) -> its moderator labels, enforce-mode and shadow-mode labels together."""
    with store.reads.connect() as conn:
        return label_counts(conn)


def rule_stats(store: Store, pack: Pack, since_ms: int | None = None, until_ms: int | None = None) -> list[RuleStats]:
    """Every rule of the pack (and any rule that hit but is gone from it), in pack order."""
    hits, shadow, subjects = stored_hits(store, since_ms, until_ms)
    labels = precision_by_rule(store)
    rules = {r.id: r for r in pack.rules}
    names = list(rules) + sorted((set(hits) | set(shadow)) - set(rules))
    out = []
    for name in names:
        rule = rules.get(name)
        counts = labels.get(name, LabelCounts(name))
        out.append(RuleStats(rule=name, mode=rule.spec.mode if rule else "gone",
                             category=rule.spec.category if rule else "", hits=hits[name], shadow_hits=shadow[name],
                             accounts=len(subjects.get(name, ())), upheld=counts.upheld,
                             overturned=counts.overturned, precision=counts.precision))
    return out
