"""Friend-request spam (S7): "strangers add you by the hundreds; the friend list is full of sellers".

What tells a seller adding strangers from a sociable person adding friends of friends is not the volume
alone (the hourly and daily counters of signals/counters.py) but whom they ask and how it goes: a spammer's
targets share no friend with it, few accept, and most adds stay one-way. These signals put numbers on that
for the policy pack to judge; they never decide.

All of them read the counters of requests that were let through (a refused request reached nobody, so it
can neither be accepted nor count as one-way), plus the request being decided where it says so. Acceptances
are counted when they arrive, so a burst of requests has a low ratio until people answer: the ratio is None
below MIN_ASKED people, and the pack's rules combine it with the share of strangers rather than act on it
alone.
"""

from __future__ import annotations

from clearcircle.signals.context import SignalContext
from clearcircle.signals.counters import DAY_MS, stranger
from clearcircle.signals.registry import REGISTRY

signal = REGISTRY.signal
_REQUEST = ("friend_request",)
WEEK_MS = 7 * DAY_MS
MIN_ASKED = 20  # fewer people asked in the week than this: no acceptance ratio (too few to judge)


def _distinct(ctx: SignalContext, counter: str, window_ms: int) -> int:
    return ctx.counters.count(ctx.event.actor, counter, ctx.at_ms - window_ms, ctx.at_ms, distinct=True)


def _is_stranger(ctx: SignalContext) -> bool:
    if "_fr_stranger" not in ctx.memo:
        ctx.memo["_fr_stranger"] = stranger(ctx.event, ctx.lookups)
    return ctx.memo["_fr_stranger"]


@signal("friend_requests.mutual_friends", version=1, type=int, reads=_REQUEST,
        description="friends the actor and the person asked (body.target) have in common")
def _mutual(ctx: SignalContext) -> int:
    return ctx.lookups.mutual_friends(ctx.event.actor, ctx.event.body.target)


@signal("friend_requests.stranger", version=1, type=bool, reads=_REQUEST,
        description="the person asked is not a friend and shares no friend with the actor")
def _stranger(ctx: SignalContext) -> bool:
    return _is_stranger(ctx)


def _strangers(ctx: SignalContext, window_ms: int) -> int:
    """Distinct strangers asked in the window, this request included (it is recorded only if let through)."""
    return _distinct(ctx, "friend_request_strangers", window_ms) + _is_stranger(ctx)


def _asked(ctx: SignalContext, window_ms: int) -> int:
    """Distinct people asked in the window, this request included."""
    return _distinct(ctx, "friend_requests_sent", window_ms) + 1


@signal("friend_requests.strangers_1d", version=1, type=int, reads=_REQUEST,
        description="distinct people with no mutual friend the actor asked in 24 hours (requests let through, "
                    "and this one)")
def _strangers_1d(ctx: SignalContext) -> int:
    return _strangers(ctx, DAY_MS)


@signal("friend_requests.strangers_7d", version=1, type=int, reads=_REQUEST,
        description="distinct people with no mutual friend the actor asked in 7 days (let through, and this one)")
def _strangers_7d(ctx: SignalContext) -> int:
    return _strangers(ctx, WEEK_MS)


@signal("friend_requests.stranger_share_1d", version=1, type=float, reads=_REQUEST,
        description="share of the people asked in 24 hours who had no mutual friend with the actor (0-1)")
def _share_1d(ctx: SignalContext) -> float:
    return min(1.0, _strangers(ctx, DAY_MS) / _asked(ctx, DAY_MS))


@signal("friend_requests.stranger_share_7d", version=1, type=float, reads=_REQUEST,
        description="share of the people asked in 7 days who had no mutual friend with the actor (0-1)")
def _share_7d(ctx: SignalContext) -> float:
    return min(1.0, _strangers(ctx, WEEK_MS) / _asked(ctx, WEEK_MS))


@signal("friend_requests.asked_7d", version=1, type=int, reads=_REQUEST,
        description="distinct people the actor asked in 7 days (requests let through, and this one)")
def _asked_7d(ctx: SignalContext) -> int:
    return _asked(ctx, WEEK_MS)


@signal("friend_requests.accepted_7d", version=1, type=int, reads=_REQUEST,
        description="distinct people who accepted the actor's friend requests in 7 days")
def _accepted_7d(ctx: SignalContext) -> int:
    return _distinct(ctx, "friend_requests_accepted", WEEK_MS)


@signal("friend_requests.acceptance_ratio_7d", version=1, type=float, reads=_REQUEST,
        description=f"accepted_7d / asked_7d (0-1); none while fewer than {MIN_ASKED} people were asked")
def _ratio_7d(ctx: SignalContext) -> float | None:
    asked = _asked(ctx, WEEK_MS)
    if asked < MIN_ASKED:
        return None
    return min(1.0, _distinct(ctx, "friend_requests_accepted", WEEK_MS) / asked)


@signal("friend_requests.one_way_7d", version=1, type=int, reads=_REQUEST,
        description="one-way adds: people asked in 7 days who have not accepted (asked_7d - accepted_7d)")
def _one_way_7d(ctx: SignalContext) -> int:
    return max(0, _asked(ctx, WEEK_MS) - _distinct(ctx, "friend_requests_accepted", WEEK_MS))
