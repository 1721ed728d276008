"""The policy workbench: run a changed pack (or one changed rule) over the stored events without acting.

The events are replayed through the real pipeline into a throwaway SQLite store in a temporary folder, never
the real one (which is only read). The throwaway store starts with what events alone do not rebuild: the
merchant registry and campaign overlays (copied), and each reporter's reputation record (so reports weigh as
they would today). Events from 32 days before `since` are replayed too, so counter windows are full, but only
events from `since` on are compared.

"Old" is what was stored: the decisions actually made (by whichever pack version was live). The report shows
the events whose verdict changes, each rule's enforce and shadow hits old vs new, and each rule's precision
from moderator labels (clearcircle.review.labels), so a rule change is judged against what moderators said.
"""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from clearcircle.events.schemas import parse_event_json
from clearcircle.pipeline import Pipeline
from clearcircle.policy.pack import Pack, Rule
from clearcircle.review.errors import ReviewError
from clearcircle.review.stats import precision_by_rule
from clearcircle.signals.counters import MAX_WINDOW_MS
from clearcircle.signals.registry import load_builtin_signals
from clearcircle.store import tables as t
from clearcircle.store.repository import Store

BATCH = 1000
COPIED_TABLES = ("merchants", "merchant_history", "campaigns", "campaign_history")


@dataclass(frozen=True)
class VerdictChange:
    event_id: str
    type: str
    actor: str
    occurred_ms: int
    old_verdict: str
    new_verdict: str
    old_rules: list[str]
    new_rules: list[str]


@dataclass(frozen=True)
class RuleDiff:
    """One rule's hits over the compared events, old (stored) and new (replayed), and its label precision."""

    rule: str
    old_mode: str | None  # None: not in the baseline pack
    new_mode: str | None  # None: not in the candidate
    old_hits: int
    new_hits: int
    old_shadow_hits: int
    new_shadow_hits: int
    upheld: int
    overturned: int
    precision: float | None


@dataclass
class BacktestReport:
    candidate_version: str
    events: int  # events compared (from `since` on)
    replayed: int  # events replayed (with the window before `since`)
    since_ms: int | None
    rule: str | None
    changed_total: int
    changed: list[VerdictChange] = field(default_factory=list)  # the first `max_changes`, in event order
    rules: list[RuleDiff] = field(default_factory=list)
    old_verdicts: dict[str, int] = field(default_factory=dict)
    new_verdicts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidate_pack(baseline: Pack, changed: Pack, rule_id: str) -> Pack:
    """The baseline with only `rule_id` changed: taken from `changed` (replaced or added), or dropped if
    `changed` no longer has it. Lists, media and settings stay the baseline's."""
    new_rule: Rule | None = next((r for r in changed.rules if r.id == rule_id), None)
    if new_rule is None and not any(r.id == rule_id for r in baseline.rules):
        raise ReviewError(f"rule: {rule_id!r} is in neither the live pack nor the changed one")
    rules = [new_rule if r.id == rule_id else r for r in baseline.rules if r.id != rule_id or new_rule is not None]
    if new_rule is not None and not any(r.id == rule_id for r in baseline.rules):
        rules.append(new_rule)
    by_event: dict[str, list[Rule]] = {}
    for r in rules:
        for event_type in r.spec.events:
            by_event.setdefault(event_type, []).append(r)
    return dataclasses.replace(baseline, rules=tuple(r for r in rules if r is not None),
                               by_event={k: tuple(v) for k, v in by_event.items()},
                               version=f"{baseline.version}+{rule_id}@{changed.version}")


def _seed(store: Store, scratch: Store) -> None:
    """Copy what events do not rebuild into the throwaway store."""
    with store.reads.connect() as src, scratch.engine.begin() as dst:
        for name in COPIED_TABLES:
            table = t.metadata.tables[name]
            rows = [dict(r._mapping) for r in src.execute(select(table))]
            if rows:
                dst.execute(table.insert(), rows)
        seeded = []
        for r in src.execute(select(t.accounts.c.id, t.accounts.c.state)):
            reporting = orjson.loads(r.state).get("reporting")
            if reporting:
                state = {"account_id": r.id, "reporting": reporting}
                seeded.append({"id": r.id, "account_type": None, "registered_ms": None, "updated_ms": 0,
                               "state": orjson.dumps(state).decode()})
        if seeded:
            dst.execute(t.accounts.insert(), seeded)


def _stored_events(store: Store, from_ms: int | None) -> Any:
    """Stored events in arrival order (the order the pipeline decided them), in pages."""
    last = 0
    e = t.events.c
    while True:
        query = select(e.seq, e.id, e.type, e.actor, e.occurred_ms, e.payload).where(e.seq > last)
        if from_ms is not None:
            query = query.where(e.occurred_ms >= from_ms)
        with store.reads.connect() as conn:
            rows = conn.execute(query.order_by(e.seq).limit(BATCH)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].seq


def _old(store: Store, event_ids: list[str]) -> dict[str, dict[str, Any]]:
    with store.reads.connect() as conn:
        rows = conn.execute(select(t.decisions.c.event_id, t.decisions.c.payload)
                            .where(t.decisions.c.event_id.in_(event_ids))).all()
    return {r.event_id: orjson.loads(r.payload) for r in rows}


def backtest(store: Store, candidate: Pack, since_ms: int | None = None, rule: str | None = None,
             baseline: Pack | None = None, max_changes: int = 200) -> BacktestReport:
    """Replay the stored events (occurred from `since_ms` on; all without it) under `candidate` and compare
    with the stored decisions. With `rule`, only that rule changes from `baseline` (the live pack; required
    then). The real store is only read."""
    if rule is not None:
        if baseline is None:
            raise ReviewError("rule: a single-rule backtest needs the live pack as its baseline")
        candidate = candidate_pack(baseline, candidate, rule)
    baseline_modes = {r.id: r.spec.mode for r in baseline.rules} if baseline is not None else {}
    report = BacktestReport(candidate_version=candidate.version, events=0, replayed=0, since_ms=since_ms, rule=rule,
                            changed_total=0)
    old_hits: Counter[str] = Counter()
    new_hits: Counter[str] = Counter()
    old_shadow: Counter[str] = Counter()
    new_shadow: Counter[str] = Counter()
    old_verdicts: Counter[str] = Counter()
    new_verdicts: Counter[str] = Counter()
    from_ms = None if since_ms is None else since_ms - MAX_WINDOW_MS
    with tempfile.TemporaryDirectory(prefix="cc-backtest-") as tmp:
        scratch = Store(f"sqlite:///{Path(tmp) / 'backtest.db'}")
        try:
            scratch.upgrade()
            _seed(store, scratch)
            pipeline = Pipeline(scratch, candidate, secrets.token_bytes(32), load_builtin_signals())
            for rows in _stored_events(store, from_ms):
                outcomes = pipeline.submit([parse_event_json(r.payload) for r in rows])
                report.replayed += len(rows)
                compared = [(r, o) for r, o in zip(rows, outcomes, strict=True)
                            if since_ms is None or r.occurred_ms >= since_ms]
                old = _old(store, [r.id for r, _o in compared])
                for r, outcome in compared:
                    before, after = old.get(r.id), outcome.decision
                    if before is None:
                        continue
                    report.events += 1
                    old_verdicts[before["verdict"]] += 1
                    new_verdicts[after["verdict"]] += 1
                    old_hits.update(before["rules"])
                    old_shadow.update(before["shadow_rules"])
                    new_hits.update(after["rules"])
                    new_shadow.update(after["shadow_rules"])
                    if before["verdict"] != after["verdict"]:
                        report.changed_total += 1
                        if len(report.changed) < max_changes:
                            report.changed.append(VerdictChange(r.id, r.type, r.actor, r.occurred_ms,
                                                                before["verdict"], after["verdict"], before["rules"],
                                                                after["rules"]))
        finally:
            scratch.close()
    labels = precision_by_rule(store)
    new_modes = {r.id: r.spec.mode for r in candidate.rules}
    names = list(dict.fromkeys([*baseline_modes, *new_modes, *sorted(set(old_hits) | set(old_shadow))]))
    for name in names:
        counts = labels.get(name)
        report.rules.append(RuleDiff(
            rule=name, old_mode=baseline_modes.get(name), new_mode=new_modes.get(name), old_hits=old_hits[name],
            new_hits=new_hits[name], old_shadow_hits=old_shadow[name], new_shadow_hits=new_shadow[name],
            upheld=counts.upheld if counts else 0, overturned=counts.overturned if counts else 0,
            precision=counts.precision if counts else None))
    report.old_verdicts, report.new_verdicts = dict(sorted(old_verdicts.items())), dict(sorted(new_verdicts.items()))
    return report
