"""Plain account facts of the actor at the event's time: age, type, class, strikes, restrictions, labels."""

from __future__ import annotations

from clearcircle.enforcement.state import AccountView
from clearcircle.events.features import features_of
from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import REGISTRY

signal = REGISTRY.signal


@signal("account.known", version=1, type=bool, description="the actor has an account_registered event")
def _known(ctx: SignalContext) -> bool:
    return ctx.actor.known


@signal("account.type", version=1, type=str,
        description="personal / subscription / service, or 'unknown' before registration")
def _type(ctx: SignalContext) -> str:
    return ctx.actor.account_type or "unknown"


def account_class(view: AccountView) -> str:
    """The account's class (S8): the one set on it (a verified merchant or brand), else its registered type.

    An unregistered account is "unknown"; limits then fall to the pack's defaults.
    """
    return view.account_class


@signal("account.class", version=1, type=str,
        description="personal / subscription / service / merchant / verified_brand, or 'unknown' before registration")
def _class(ctx: SignalContext) -> str:
    return account_class(ctx.actor)


@signal("account.age_days", version=1, type=float,
        description="days since registration (or first sight) at the event's time")
def _age(ctx: SignalContext) -> float | None:
    return ctx.actor.age_days


@signal("account.strikes", version=1, type=int, description="strikes not yet decayed")
def _strikes(ctx: SignalContext) -> int:
    return ctx.actor.strikes


@signal("account.restrictions", version=1, type=list, description="features currently restricted")
def _restrictions(ctx: SignalContext) -> list[str]:
    return list(ctx.actor.restrictions)


@signal("account.labels", version=1, type=list, description="labels currently on the account")
def _labels(ctx: SignalContext) -> list[str]:
    return ctx.actor.labels


@signal("account.banned", version=1, type=bool, description="permanently banned")
def _banned(ctx: SignalContext) -> bool:
    return ctx.actor.banned


@signal("account.suspended", version=1, type=bool, description="suspended at the event's time")
def _suspended(ctx: SignalContext) -> bool:
    return ctx.actor.suspended


@signal("account.reach_limited", version=1, type=bool, description="reach currently limited")
def _reach(ctx: SignalContext) -> bool:
    return ctx.actor.reach_limited


@signal("account.friends", version=1, type=int, description="accepted friends")
def _friends(ctx: SignalContext) -> int:
    return ctx.actor.friends


@signal("event.restricted_feature", version=1, type=bool,
        reads=("post_created", "share", "friend_request", "follow", "message_push", "referral", "like"),
        description="the event uses a feature the actor is currently restricted from")
def _uses_restricted(ctx: SignalContext) -> bool:
    return ctx.actor.restricted_from(features_of(ctx.event))
