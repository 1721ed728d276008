"""Counters per account: friend requests, posts, shares, pushes, follows, reports received.

A counter is defined once here (which events hit it, keyed by which account, counting what member); the
windowed signals read it through the CounterReader interface, so the SQLite-backed default and a Redis
implementation are interchangeable. Two kinds of window: sliding (the last hour, 24 h, 30 days: rate limits
on behaviour) and calendar (the day or month containing the event in the platform's time zone: quotas, S9
"4 pushes a month" means March, not the 30 days before).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from clearcircle.events.schemas import Event
from clearcircle.signals.context import Lookups, SignalContext
from clearcircle.signals.registry import REGISTRY

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class CounterDef:
    name: str
    event_types: frozenset[str]
    key: Callable[[Event], str | tuple[str, ...]]  # whose counter: usually the actor; a tuple: a hit per key
    member: Callable[[Event], str]  # what distinct() counts: usually the event itself
    # quotas count what went out, rate limits count attempts: a refused push must not use up the quota
    only_allowed: bool = False
    # a hit only when this holds at recording time (read from account state); prefetching assumes it may
    applies: Callable[[Event, Lookups], bool] | None = None
    # (key, member) pairs, when the member differs per key (photo bands: each photo's own hash); then
    # `key` and `member` are not used for recording
    pairs: Callable[[Event], tuple[tuple[str, str], ...]] | None = None


def item_key(item: str) -> str:
    """A bounded counter key for a shared item (items may be long URLs)."""
    return "item:" + hashlib.sha256(item.encode()).hexdigest()[:32]


def _actor(e: Event) -> str:
    return e.actor


def _event_id(e: Event) -> str:
    return e.id


def stranger(e: Event, lookups: Lookups) -> bool:
    """S7: the person asked is not a friend yet and shares no friend with the asker."""
    at_ms = int(e.occurred_at.timestamp() * 1000)
    return lookups.mutual_friends(e.actor, e.body.target) == 0 and \
        not lookups.account(e.actor, at_ms).is_friend(e.body.target)


def _accepted_by(e: Event) -> tuple[str, ...]:
    """The requester whose friend request this answer accepted (none for a refusal)."""
    return (e.body.target,) if e.body.accepted else ()


def _photos(e: Event) -> tuple[str, ...]:
    """One key per distinct photo of a post (its PDQ hash, clearcircle.signals.media); none without images."""
    if not e.body.images:
        return ()
    from clearcircle.signals.media.image import photo_keys  # image libraries only for posts with images

    return photo_keys(e.body.images)


def _photo_bands(e: Event) -> tuple[tuple[str, str], ...]:
    """Near-duplicate photos: a hit per PDQ band of each photo, member = its hash + poster (signals.media.photos)."""
    if not e.body.images:
        return ()
    from clearcircle.signals.media.image import photo_band_hits

    return photo_band_hits(e.body.images, e.actor)


COUNTERS: dict[str, CounterDef] = {
    c.name: c
    for c in (
        CounterDef("friend_requests", frozenset({"friend_request"}), _actor, lambda e: e.body.target),
        CounterDef("posts", frozenset({"post_created"}), _actor, _event_id),
        CounterDef("shares", frozenset({"share"}), _actor, lambda e: e.body.item),
        CounterDef("pushes", frozenset({"message_push"}), _actor, _event_id, only_allowed=True),
        # the daily friend-request quota counts requests let through; `friend_requests` counts attempts. The
        # member is the person asked: S7's acceptance ratio counts distinct people reached
        CounterDef("friend_requests_sent", frozenset({"friend_request"}), _actor, lambda e: e.body.target,
                   only_allowed=True),
        CounterDef("follows", frozenset({"follow"}), _actor, lambda e: e.body.target),
        CounterDef("referrals", frozenset({"referral"}), _actor, lambda e: e.body.referee),
        CounterDef("reports_received", frozenset({"report"}), lambda e: e.body.target, _actor),
        CounterDef("complaints_received", frozenset({"buyer_complaint"}), lambda e: e.body.seller, _actor),
        CounterDef("item_shares", frozenset({"share"}), lambda e: item_key(e.body.item), _actor),
        CounterDef("photo_posts", frozenset({"post_created"}), _photos, _actor),  # the same photo, many posters
        CounterDef("photo_bands", frozenset({"post_created"}), lambda e: (), _actor, pairs=_photo_bands),
        # S7 friend-request spam (signals/friend_requests.py): which people the actor's requests that went out
        # reached were strangers, and who accepted (keyed by the requester, one hit per acceptor)
        CounterDef("friend_request_strangers", frozenset({"friend_request"}), _actor, lambda e: e.body.target,
                   only_allowed=True, applies=stranger),
        CounterDef("friend_requests_accepted", frozenset({"friend_request_answered"}), _accepted_by, _actor,
                   only_allowed=True),
    )
}
_BY_TYPE: dict[str, list[CounterDef]] = {}
for _c in COUNTERS.values():
    for _t in _c.event_types:
        _BY_TYPE.setdefault(_t, []).append(_c)
# the longest window read: a calendar month (31 days) starting up to 14 h earlier in the platform's zone
MAX_WINDOW_MS = 32 * DAY_MS
Period = Literal["day", "month"]


def hits_for(event: Event, allowed: bool | None = None, lookups: Lookups | None = None) -> list[tuple[str, str, str]]:
    """(key, counter name, member) for each counter this event increments.

    allowed=None: every counter (for prefetching); False: the attempt counters, recorded before the
    decision; True: the counters of what was let through, recorded after it. Without `lookups` a counter's
    `applies` condition is taken to hold (prefetching loads a key that may not get a hit).
    """
    counters = _FOR.get((event.type, allowed))
    if not counters:
        return []
    out: list[tuple[str, str, str]] = []
    for c in counters:
        if c.applies is not None and lookups is not None and not c.applies(event, lookups):
            continue
        if c.pairs is not None:
            out += [(key, c.name, member) for key, member in c.pairs(event)]
            continue
        key = c.key(event)
        if isinstance(key, str):
            out.append((key, c.name, c.member(event)))
        elif key:
            member = c.member(event)
            out += [(k, c.name, member) for k in key]
    return out


# hits_for's counters by (event type, allowed), in the order of COUNTERS: runs three times for every event
_FOR: dict[tuple[str, bool | None], tuple[CounterDef, ...]] = {
    (t, allowed): tuple(c for c in cs if allowed is None or c.only_allowed == allowed)
    for t, cs in _BY_TYPE.items() for allowed in (None, False, True)
}


def _windowed(counter: str, window_ms: int, label: str, description: str, distinct: bool = False) -> None:
    definition = COUNTERS[counter]

    pending = 1 if definition.only_allowed else 0  # the event being decided is not recorded yet

    def compute(ctx: SignalContext) -> int:
        key = definition.key(ctx.event)
        return ctx.counters.count(key, counter, ctx.at_ms - window_ms, ctx.at_ms, distinct=distinct) + pending

    REGISTRY.register_fn(f"counters.{counter}_{label}", compute, version=1, reads=definition.event_types,
                         type=int, description=description)


def calendar_window(at_ms: int, zone: ZoneInfo, per: Period) -> tuple[int, int]:
    """[start, end) in ms of the calendar day or month containing `at_ms`, as lived in `zone`.

    Midnight is the zone's wall-clock midnight: 2026-03-31T16:30Z is already April 1st in Shanghai, so it
    falls in April's window there and in March's in UTC.
    """
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    return _window_of(local.year, local.month, 1 if per == "month" else local.day, zone, per)


@functools.lru_cache(maxsize=256)
def _window_of(year: int, month: int, day: int, zone: ZoneInfo, per: Period) -> tuple[int, int]:
    """calendar_window's bounds, which depend on the local date alone: kept, as quota signals ask on every
    push and friend request and nearly all of them fall on the same few days (building them costs ~4 µs)."""
    start = datetime(year, month, day, tzinfo=zone)
    if per == "day":
        nxt = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=zone)
    else:
        nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return round(start.timestamp() * 1000), round(nxt.timestamp() * 1000)


def period_label(at_ms: int, zone: ZoneInfo, per: Period) -> str:
    """The calendar period as people name it: 2026-03-02 for a day, 2026-03 for a month."""
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    return local.strftime("%Y-%m-%d" if per == "day" else "%Y-%m")


def count_in_period(ctx: SignalContext, counter: str, zone: ZoneInfo, per: Period) -> int:
    """Hits of `counter` for the event's key in the whole calendar period containing the event.

    The whole period, not just up to the event: a quota is per day or month, so an event arriving late
    (stamped 10:00, after a push stamped 12:00 went out) still finds that day's quota used. For a quota
    counter (only_allowed) the event being decided is not in it: it is recorded only if let through.
    """
    definition = COUNTERS[counter]
    start, end = calendar_window(ctx.at_ms, zone, per)
    # the reader's window is (since, until]: a hit at exactly midnight belongs to the new period
    return ctx.counters.count(definition.key(ctx.event), counter, start - 1, end - 1)


_windowed("friend_requests", HOUR_MS, "1h", "friend requests sent in the last hour")
_windowed("friend_requests", DAY_MS, "1d", "friend requests sent in the last 24 hours")
_windowed("friend_requests", DAY_MS, "targets_1d", "distinct people asked in the last 24 hours", True)
_windowed("posts", HOUR_MS, "1h", "posts in the last hour")
_windowed("posts", DAY_MS, "1d", "posts in the last 24 hours")
_windowed("shares", HOUR_MS, "1h", "shares in the last hour")
_windowed("shares", DAY_MS, "1d", "shares in the last 24 hours")
_windowed("pushes", DAY_MS, "1d", "message pushes in the last 24 hours")
_windowed("pushes", 30 * DAY_MS, "30d", "message pushes in the last 30 days")
_windowed("follows", HOUR_MS, "1h", "follows in the last hour")
_windowed("referrals", 30 * DAY_MS, "30d", "referrals made in the last 30 days")
_windowed("reports_received", 7 * DAY_MS, "7d", "distinct reporters of the target in 7 days", True)
_windowed("complaints_received", 30 * DAY_MS, "30d", "distinct buyers complaining of the seller in 30 days",
          True)
_windowed("item_shares", HOUR_MS, "1h", "shares of the same item by anyone in the last hour")
