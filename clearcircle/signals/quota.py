"""Quota signals (S8, S9): each account class's limits from the pack, what is used and what is left.

Limits live in pack.yaml `quotas` (policy staff change them without code); the day and month of a quota are
calendar ones in the pack's `timezone`. Every value is computed for the actor's class (`account.class`), and
"left" is the room *before* this event: a quota rule fires when nothing is left, and its decision shows 0.
Quota counters count only what was let through, so a refused push or request never uses up the quota.
"""

from __future__ import annotations

from collections.abc import Callable

from clearcircle.enforcement.state import AccountView
from clearcircle.policy.rules import PackSettings, PushQuota, Tiered, lookup_order
from clearcircle.signals.account import account_class
from clearcircle.signals.context import CounterReader, SignalContext
from clearcircle.signals.counters import calendar_window, count_in_period, period_label
from clearcircle.signals.registry import REGISTRY

signal = REGISTRY.signal
_DEFAULTS = PackSettings(name="defaults")
_FRIENDS = ("friend_request", "friend_request_answered")
_REQUESTS = ("friend_request",)
_PUSHES = ("message_push",)


def settings_of(ctx: SignalContext) -> PackSettings:
    """The pack's settings; a context built without a pack (a unit test) gets the built-in defaults."""
    settings = ctx.resources.get("settings")
    return settings if isinstance(settings, PackSettings) else _DEFAULTS


def industry_of(view: AccountView) -> str | None:
    """The industry an account is registered in, for industry tiers (None: no industry tier applies)."""
    return view.industry


def tier_limit(tiered: Tiered, view: AccountView) -> int | None:
    """The account's limit in a tiered quota: by class (then registered type), industry, then default."""
    return tiered.limit(lookup_order(account_class(view), view.account_type), industry_of(view))


def _left(limit: int | None, used: int | None) -> int | None:
    return None if limit is None or used is None else max(0, limit - used)


def _limit_used_left(names: tuple[str, str, str], reads: tuple[str, ...],
                     numbers: Callable[[SignalContext], tuple[int | None, int | None]],
                     descriptions: tuple[str, str, str]) -> None:
    """Register a quota's three signals (limit, used, left) over one function giving (limit, used):
    every counted quota reads the same way in rules and decisions."""
    limit_name, used_name, left_name = names
    signal(limit_name, version=1, type=int, reads=reads, description=descriptions[0])(lambda ctx: numbers(ctx)[0])
    signal(used_name, version=1, type=int, reads=reads, description=descriptions[1])(lambda ctx: numbers(ctx)[1])
    signal(left_name, version=1, type=int, reads=reads, description=descriptions[2])(lambda ctx: _left(*numbers(ctx)))


# --- friends (S8) -------------------------------------------------------------------------------------------


def _friends_limit_of(ctx: SignalContext, view: AccountView) -> int | None:
    return tier_limit(settings_of(ctx).quotas.friends, view)


@signal("quota.friends_limit", version=1, type=int,
        description="the most friends the actor's class may have (pack quotas.friends); none: no limit")
def _friends_limit(ctx: SignalContext) -> int | None:
    return _friends_limit_of(ctx, ctx.actor)


@signal("quota.friends_left", version=1, type=int,
        description="friends the actor may still add before this event: friends limit - account.friends")
def _friends_left(ctx: SignalContext) -> int | None:
    return _left(_friends_limit_of(ctx, ctx.actor), ctx.actor.friends)


@signal("quota.target_friends_left", version=1, type=int, reads=_FRIENDS,
        description="friends the other person (body.target) may still add before this event")
def _target_friends_left(ctx: SignalContext) -> int | None:
    other = ctx.lookups.account(ctx.event.body.target, ctx.at_ms)
    return _left(_friends_limit_of(ctx, other), other.friends)


@signal("quota.adds_friend", version=1, type=bool, reads=("friend_request_answered",),
        description="this answer would make the two friends (accepted, and not friends already)")
def _adds_friend(ctx: SignalContext) -> bool:
    body = ctx.event.body
    return bool(body.accepted) and not ctx.actor.is_friend(body.target)


# --- friend requests per calendar day (S7, S8) ----------------------------------------------------------------


def _requests(ctx: SignalContext) -> tuple[int | None, int]:
    if "_quota_requests" not in ctx.memo:
        settings = settings_of(ctx)
        limit = tier_limit(settings.quotas.friend_requests_per_day, ctx.actor)
        used = count_in_period(ctx, "friend_requests_sent", settings.zone, "day")
        ctx.memo["_quota_requests"] = (limit, used)
    return ctx.memo["_quota_requests"]


_limit_used_left(
    ("quota.friend_requests_limit_day", "quota.friend_requests_used_day", "quota.friend_requests_left_day"),
    _REQUESTS, _requests,
    ("friend requests the actor's class may send per calendar day; none: no limit",
     "friend requests let through this calendar day (platform time zone), before this one",
     "friend requests the actor may still send this calendar day, before this one"))


# --- pushes per calendar day or month (S9) --------------------------------------------------------------------


def _pushes(ctx: SignalContext) -> tuple[PushQuota | None, int | None]:
    if "_quota_pushes" not in ctx.memo:
        settings = settings_of(ctx)
        quota = settings.quotas.push_quota(lookup_order(account_class(ctx.actor), ctx.actor.account_type))
        used = None if quota is None else count_in_period(ctx, "pushes", settings.zone, quota.per)
        ctx.memo["_quota_pushes"] = (quota, used)
    return ctx.memo["_quota_pushes"]


@signal("quota.pushes_per", version=1, type=str, reads=_PUSHES,
        description="the period of the actor's push quota: day or month (calendar, platform time zone)")
def _pushes_per(ctx: SignalContext) -> str | None:
    quota = _pushes(ctx)[0]
    return None if quota is None else quota.per


@signal("quota.pushes_period", version=1, type=str, reads=_PUSHES,
        description="the calendar day (2026-03-02) or month (2026-03) the push counts against")
def _pushes_period(ctx: SignalContext) -> str | None:
    quota = _pushes(ctx)[0]
    return None if quota is None else period_label(ctx.at_ms, settings_of(ctx).zone, quota.per)


def _push_numbers(ctx: SignalContext) -> tuple[int | None, int | None]:
    quota, used = _pushes(ctx)
    return (None, None) if quota is None else (quota.limit, used)


_limit_used_left(
    ("quota.pushes_limit", "quota.pushes_used", "quota.pushes_left"), _PUSHES, _push_numbers,
    ("pushes the actor's class may send per period; none: no push quota",
     "pushes let through in the period, before this one (refused pushes do not count)",
     "pushes the actor may still send in the period, before this one"))


# --- the account's quotas at a glance (API and CLI) -----------------------------------------------------------


def quota_report(view: AccountView, settings: PackSettings, counters: CounterReader) -> dict[str, object]:
    """Every quota of the account at `view.at_ms`: limit, used and left, as staff look them up (S8, S9).

    Computed by the same limits and calendar windows the quota signals use, so what staff see is what the
    next event will be judged by.
    """
    zone, at_ms, account = settings.zone, view.at_ms, view.account_id
    friends_limit = tier_limit(settings.quotas.friends, view)
    report: dict[str, object] = {
        "account": account,
        "class": account_class(view),
        "industry": industry_of(view),
        "timezone": settings.timezone,
        "friends": {"limit": friends_limit, "used": view.friends, "left": _left(friends_limit, view.friends)},
    }
    start, end = calendar_window(at_ms, zone, "day")
    requests_limit = tier_limit(settings.quotas.friend_requests_per_day, view)
    used = counters.count(account, "friend_requests_sent", start - 1, end - 1)
    report["friend_requests"] = {"per": "day", "period": period_label(at_ms, zone, "day"),
                                 "limit": requests_limit, "used": used, "left": _left(requests_limit, used)}
    push = settings.quotas.push_quota(lookup_order(account_class(view), view.account_type))
    if push is not None:
        start, end = calendar_window(at_ms, zone, push.per)
        used = counters.count(account, "pushes", start - 1, end - 1)
        report["pushes"] = {"per": push.per, "period": period_label(at_ms, zone, push.per),
                            "limit": push.limit, "used": used, "left": _left(push.limit, used)}
    return report
