"""Signals from the batch graph detectors (S2, S3, S4, S7, S13): the latest `clearcircle detect` run, read live.

The pipeline keeps one `GraphBook` and refreshes it once a batch (one query: the latest finished run; the
run's rows are read again only when a newer run appears), and hands it to each event's context (`attach`),
as it does the merchant records. A context without a book (a unit test, a tool) sees no findings.

`graph.evasion_of` also covers an account created after the run: it evades a banned account when it shares a
device, phone, payment or identity value with an account of a flagged evasion cluster (or with one of its
evaders) and registered after that account's ban.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from clearcircle.enforcement.state import DAY_MS
from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import REGISTRY
from clearcircle.store.findings import latest_run, run_roles

BOOK = "_graph_book"
ITEM_EVENTS = ("share", "like")
signal = REGISTRY.signal


class GraphBook:
    """Per account (or item), what the latest detector run said about it."""

    def __init__(self) -> None:
        self.run_id: int | None = None
        self.facts: dict[str, dict[str, Any]] = {}
        self.has_evasion = False

    def refresh(self, conn: Connection) -> None:
        run = latest_run(conn)
        if run == self.run_id:
            return
        facts: dict[str, dict[str, Any]] = {}
        for account, detector, role, value, at_ms, score in run_roles(conn, run) if run is not None else ():
            f = facts.setdefault(account, {})
            key = f"{detector}.{role}"
            if detector == "evasion":
                best = f.get(key)
                if value is not None and at_ms is not None and (best is None or (at_ms, value) < best[::-1]):
                    f[key] = (value, at_ms)
            else:
                f[key] = max(f.get(key, 0.0), float(score))
        self.facts, self.run_id = facts, run
        self.has_evasion = any(k.startswith("evasion.") for f in facts.values() for k in f)

    def get(self, account: str) -> dict[str, Any]:
        return self.facts.get(account, {})


def attach(ctx: SignalContext, book: GraphBook) -> None:
    """Give the event's signals the latest detector findings."""
    ctx.memo[BOOK] = book


def _facts(ctx: SignalContext, account: str | None = None) -> dict[str, Any]:
    book: GraphBook | None = ctx.memo.get(BOOK)
    return {} if book is None else book.get(account if account is not None else ctx.event.actor)


@signal("graph.follower_fraud", version=1, type=float,
        description="S3: score of the strongest lockstep group found inflating the actor's followers (0: none)")
def _follower_fraud(ctx: SignalContext) -> float:
    return float(_facts(ctx).get("lockstep.target", 0.0))


@signal("graph.bought_follower", version=1, type=bool,
        description="S3: the actor is in a lockstep group of bought followers")
def _bought_follower(ctx: SignalContext) -> bool:
    return "lockstep.member" in _facts(ctx)


@signal("graph.mlm_organiser", version=1, type=bool,
        description="S4: the actor is the organiser (root) of a referral tree flagged as MLM distribution")
def _mlm_organiser(ctx: SignalContext) -> bool:
    return "mlm.organiser" in _facts(ctx)


@signal("graph.mlm_member", version=1, type=bool,
        description="S4: the actor is in a referral tree flagged as MLM distribution")
def _mlm_member(ctx: SignalContext) -> bool:
    return "mlm.member" in _facts(ctx)


@signal("graph.share_burst_item", version=1, reads=ITEM_EVENTS, type=bool,
        description="S2: the shared or liked item was found in an induced-share burst")
def _share_burst_item(ctx: SignalContext) -> bool:
    return "share_burst.item" in _facts(ctx, ctx.event.body.item)


@signal("graph.friend_spam", version=1, reads=("friend_request",), type=float,
        description="S7: one-way friend requests to strangers in the actor's latest batch finding of "
                    "friend-request spam (0: none)")
def _friend_spam(ctx: SignalContext) -> float:
    return float(_facts(ctx).get("friend_spam.member", 0.0))


@signal("graph.evasion_of", version=1, type=str,
        description="S13: the banned account the actor evades (found by the evasion detector, or sharing an "
                    "identifier with a flagged cluster and registered after its ban); empty: none")
def _evasion_of(ctx: SignalContext) -> str:
    book: GraphBook | None = ctx.memo.get(BOOK)
    if book is None or not book.has_evasion:
        return ""
    actor = ctx.event.actor
    own = book.get(actor).get("evasion.evader")
    if own is not None:
        return own[0]
    age = ctx.actor.age_days
    registered = ctx.at_ms if age is None else ctx.at_ms - int(age * DAY_MS)
    best: tuple[int, str] | None = None
    for _kind, other in ctx.lookups.linked_accounts(actor):
        for key in ("evasion.evader", "evasion.cluster"):
            hit = book.get(other).get(key)
            if hit is None:
                continue
            banned, at_ms = hit
            if banned != actor and at_ms < registered and (best is None or (at_ms, banned) < best):
                best = (at_ms, banned)
    return "" if best is None else best[1]
