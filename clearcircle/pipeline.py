"""The real-time path: events in, decisions out, state and audit persisted in one transaction per batch.

events -> facts (registration, identifier links) -> counters -> signals -> policy ->
enforcement -> store. The faces (API, CLI) call `Pipeline.submit` and nothing below it.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import orjson
from sqlalchemy.exc import IntegrityError

from clearcircle.enforcement.actions import Request
from clearcircle.enforcement.enforce import enforce, from_moderator, from_policy
from clearcircle.events.identifiers import HASHED_FIELDS, hash_identifiers
from clearcircle.events.schemas import Event
from clearcircle.merchants.registry import MerchantBook, record_facts
from clearcircle.policy.campaigns import CampaignBook
from clearcircle.policy.decision import AppliedAction
from clearcircle.policy.evaluate import Evaluation, evaluate
from clearcircle.policy.pack import Pack
from clearcircle.policy.published import PackBook
from clearcircle.policy.verdicts import rank
from clearcircle.review.reputation import record_report
from clearcircle.signals.context import SignalContext, SignalValues
from clearcircle.signals.counters import MAX_WINDOW_MS, hits_for
from clearcircle.signals.graph import GraphBook
from clearcircle.signals.graph import attach as attach_graph
from clearcircle.signals.merchant import attach as attach_merchants
from clearcircle.signals.registry import SignalRegistry, load_builtin_signals
from clearcircle.store.repository import CampaignRows, PublishedPacks, Store, now_ms
from clearcircle.store.unit import UnitConflict, UnitOfWork, WorkingSet, dumps

_SUBJECT_FIELDS = ("target", "seller", "referee", "item_owner")
_CASE_SOURCES = {"report": "report", "buyer_complaint": "complaint"}  # review queue: where a case came from


@functools.cache
def _fields_of(body_type: type) -> tuple[str, ...]:
    return tuple(f for f in _SUBJECT_FIELDS if f in body_type.model_fields)


def _subject_fields(event: Event) -> tuple[str, ...]:
    """Body fields naming another account (target, seller, ...) that are set on this event."""
    return tuple(f for f in _fields_of(type(event.body)) if getattr(event.body, f) is not None)


@dataclass(frozen=True)
class Outcome:
    decision: dict
    duplicate: bool


def to_ms(event: Event) -> int:
    return int(event.occurred_at.timestamp() * 1000)


class Pipeline:
    """Decides batches of events; one instance per process, safe to share between threads."""

    def __init__(self, store: Store, pack: Pack, hash_key: bytes, registry: SignalRegistry | None = None) -> None:
        self.store = store
        self.pack = pack
        self.hash_key = hash_key
        self.registry = registry or load_builtin_signals()
        self._lock = threading.Lock()
        self._working_set = WorkingSet()
        self.campaigns = CampaignBook(self.registry)  # S12 overlays, re-read when they change (once a batch)
        self.packs = PackBook(pack, self.registry)  # the newest published pack, else `pack` (once a batch)
        self.merchants = MerchantBook()  # S10 records of the batch's actors, read once a batch
        self.graph = GraphBook()  # findings of the latest `detect` run (S2/S3/S4/S13), re-read when a newer run exists
        self.conflicts = 0  # batches decided again after an optimistic unit lost (store.unit.UnitConflict)

    def submit(self, events: Sequence[Event]) -> list[Outcome]:
        """Decide each event once (by id), in order, and commit them together.

        Decided optimistically first (other workers decide meanwhile; see Store.unit); if
        another worker's unit changed the same account in a way that cannot be merged, or stored one of these
        event ids first, the batch is decided again holding the audit head, which cannot conflict."""
        with self._lock:
            try:
                return self._submit(events)
            except (IntegrityError, UnitConflict):  # an id stored first elsewhere (its decision stands), a clash
                self.conflicts += 1
                return self._submit(events, exclusive=True)

    @contextmanager
    def staff_unit(self) -> Iterator[UnitOfWork]:
        """A unit of work for a staff step (a case decision, an appeal's reversal), under the pipeline's lock
        and on its working set, so it never interleaves with a batch deciding events of the same accounts."""
        with self._lock, self.store.unit(self._working_set) as uow:
            yield uow

    def _submit(self, events: Sequence[Event], exclusive: bool = False) -> list[Outcome]:
        outcomes: list[Outcome] = []
        events = [self._prepare(e) for e in events]
        with self.store.unit(self._working_set, events=True, exclusive=exclusive) as uow:
            accounts: set[str] = set()
            keys: set[str] = set()
            registering: list[str] = []
            pairs: list[tuple[str, str]] = []
            for e in events:
                if e.type == "account_registered":
                    registering.append(e.actor)
                    pairs += [(f, v) for f in HASHED_FIELDS if (v := getattr(e.body, f))]
                accounts.add(e.actor)
                accounts.update(getattr(e.body, f) for f in _subject_fields(e))
                keys.update(k for k, _n, _m in hits_for(e))
            since = min((to_ms(e) for e in events), default=0) - MAX_WINDOW_MS
            uow.prefetch([e.id for e in events], accounts, keys, since)
            uow.prefetch_links(pairs, registering)
            uow.prefetch_linked({e.actor for e in events})
            if not uow.reused:  # something other than units of events wrote since our last unit: publications,
                # campaigns, merchant steps and detector runs are all audited writes, so without one none changed
                self.pack = self.packs.refresh(PublishedPacks(uow.conn))  # a newly published pack, no restart
                self.campaigns.refresh(self.pack, CampaignRows(uow.conn))
                self.graph.refresh(uow.conn)
            self.merchants.forget(uow.forgotten)  # another worker's unit changed them (an application)
            self.merchants.load(uow.conn, {e.actor for e in events}, keep=uow.reused)
            for event in events:
                stored = uow.decided.get(event.id)
                if stored is not None:
                    outcomes.append(Outcome(orjson.loads(stored), True))
                    continue
                outcomes.append(Outcome(self._decide(uow, event), False))
        return outcomes

    def _prepare(self, event: Event) -> Event:
        """Hash identifiers before anything else sees the event: the raw value never goes further.

        A copy with the hashes in place, not a re-validation of the whole event: a hash ("h1:" and 64 hex
        digits) is a valid value of every identifier field, and nothing else changes."""
        if event.type != "account_registered":
            return event
        identifiers = {f: getattr(event.body, f) for f in HASHED_FIELDS}
        if not any(identifiers.values()):
            return event
        hashed = hash_identifiers(identifiers, self.hash_key)
        return event.model_copy(update={"body": event.body.model_copy(update=hashed)})

    def _facts(self, uow: UnitOfWork, event: Event, at_ms: int) -> None:
        """State that follows from the event itself, before any rule runs."""
        uow.seen(event.actor, at_ms)  # mergeable: a reporter is seen in its target's partition too
        body = event.body
        if event.type == "account_registered":
            state = uow.touch(event.actor)
            state.account_type, state.registered_ms = body.account_type, at_ms
            for field in HASHED_FIELDS:
                if value := getattr(body, field):
                    uow.link(field, value, event.actor, at_ms)
        for key, name, member in hits_for(event, allowed=False):
            uow.record_hit(key, name, at_ms, event.id, member)

    @staticmethod
    def _befriend(uow: UnitOfWork, event: Event) -> None:
        """An accepted friend request that was let through makes the two friends. Recorded after the
        decision, not as a fact before it: the friend cap (S8) refuses an accept that would pass it."""
        if event.type != "friend_request_answered" or not event.body.accepted:
            return
        uow.add_friend(event.actor, event.body.target)
        uow.add_friend(event.body.target, event.actor)

    def _decide(self, uow: UnitOfWork, event: Event) -> dict:
        at_ms = to_ms(event)
        self._facts(uow, event, at_ms)
        record_facts(uow, event, at_ms, self.merchants)  # merchant applications; the class follows the record
        record_report(uow, event, at_ms, self.pack.settings.reports)  # S14/S5: weighed, kept on the target
        ctx = SignalContext(event, at_ms, uow, uow, self.pack.resources)
        attach_merchants(ctx, self.merchants)
        attach_graph(ctx, self.graph)
        values = SignalValues(self.registry, ctx)
        settings = self.pack.settings
        if event.type == "moderator_action":
            evaluation = Evaluation(verdict="allow" if event.body.action == "lift" else event.body.action)
            requests: list[Request] = [from_moderator(event, at_ms, settings)]
            subject = event.body.target
        else:
            evaluation = evaluate(self.pack, values, self.campaigns.patches(event, at_ms, uow.state(event.actor)))
            requests = [from_policy(r, event, settings) for r in evaluation.requests]
            subject = event.actor
        changes = enforce(requests, uow.touch, settings)
        verdict = self._verdict(evaluation.verdict, changes, subject)
        if rank(verdict) < rank("remove"):  # let through: it counts against quotas
            for key, name, member in hits_for(event, allowed=True, lookups=uow):
                uow.record_hit(key, name, at_ms, event.id, member)
            self._befriend(uow, event)
        # built as a plain dict on this hot path; tests validate it against the Decision model
        payload = {
            "event_id": event.id,
            "verdict": verdict,
            "rules": [r.id for r in evaluation.fired],
            "shadow_rules": [r.id for r in evaluation.shadow],
            "signals": values.used,
            "evidence": evaluation.evidence,
            "pack_version": self.pack.version,
            "subject": subject,
            "actions": [c.model_dump(mode="json") for c in changes],
            "errors": evaluation.errors,
        }
        if evaluation.campaigns:  # S12: the campaigns that changed this decision (absent: none did)
            payload["campaigns"] = evaluation.campaigns
        raw = orjson.dumps(payload)  # insertion order kept: a re-read equals what is returned
        text = raw.decode()
        uow.add_event({"id": event.id, "type": event.type, "actor": event.actor, "occurred_ms": at_ms,
                       "received_ms": now_ms(), "payload": event.model_dump_json()})
        uow.add_decision({"event_id": event.id, "verdict": verdict, "subject": subject,
                          "pack_version": self.pack.version, "occurred_ms": at_ms, "decided_ms": now_ms(),
                          "payload": text})
        # the audit row seals the stored decision by digest; `audit verify` checks the two agree
        uow.add_audit(at_ms, "decision", event.id, dumps({"verdict": verdict, "subject": subject,
                                                           "sha256": hashlib.sha256(raw).hexdigest()}))
        for change in changes:
            self._record_change(uow, event, change, at_ms, evaluation)
        return payload

    @staticmethod
    def _verdict(verdict: str, changes: list[AppliedAction], subject: str) -> str:
        """A strike-ladder escalation of the event's own subject raises the event's verdict with it."""
        for change in changes:
            if change.account == subject and change.rule.startswith("strike-ladder") and \
                    change.action in ("restrict", "suspend", "ban") and rank(change.action) > rank(verdict):
                verdict = change.action
        return verdict

    def _record_change(self, uow: UnitOfWork, event: Event, change: AppliedAction, at_ms: int,
                       evaluation: Evaluation) -> None:
        entry = {"event_id": event.id, **change.model_dump(mode="json")}
        uow.add_audit(at_ms, "state_change", change.account, dumps(entry))
        if change.action == "case_opened":
            severity = max((r.spec.severity for r in evaluation.fired if r.id == change.rule), default=3)
            uow.add_case({"account": change.account, "event_id": event.id,
                          "source": _CASE_SOURCES.get(event.type, "rule"),
                          "rules": dumps([change.rule]), "severity": severity, "status": "open",
                          "created_ms": at_ms})
