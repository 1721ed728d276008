"""Turning policy's requests (and moderators' actions) into applied changes, with the strike ladder.

The ladder (pack.yaml `strikes.ladder`) is the graduated response of S15: a first offence gets the rule's
own soft measure; accumulated strikes escalate to restriction, suspension, and only then a ban.
"""

from __future__ import annotations

from collections.abc import Callable

from clearcircle.enforcement.actions import Request, apply
from clearcircle.enforcement.state import AccountState
from clearcircle.events.features import feature_of
from clearcircle.events.schemas import Event
from clearcircle.policy.decision import AppliedAction
from clearcircle.policy.evaluate import ActionRequest
from clearcircle.policy.rules import PackSettings

STRIKING_MANUAL = frozenset({"remove", "restrict", "suspend", "ban"})


def from_policy(req: ActionRequest, event: Event, settings: PackSettings) -> Request:
    action = req.action
    feature = action.feature
    if action.type == "restrict" and feature is None:
        feature = (feature_of(event) if req.account == event.actor else None) or "post"
    days = action.days if action.days is not None else settings.default_days.get(action.type)
    return Request(action=action.type, account=req.account, rule=req.rule, source=req.source, at_ms=req.at_ms,
                   days=days, feature=feature, label=action.label, strike=action.gives_strike(),
                   strike_days=settings.strikes.decay_days)


def from_moderator(event: Event, at_ms: int, settings: PackSettings) -> Request:
    body = event.body
    return Request(action=body.action, account=body.target, rule="moderator", source=event.id, at_ms=at_ms,
                   days=body.duration_days, feature=body.feature, label=body.label or "moderator",
                   strike=body.action in STRIKING_MANUAL, strike_days=settings.strikes.decay_days)


def _ladder(state: AccountState, source: str, at_ms: int, settings: PackSettings) -> list[AppliedAction]:
    strikes = state.view(at_ms).strikes
    steps = [s for s in settings.strikes.ladder if strikes >= s.strikes]
    if not steps:
        return []
    step = max(steps, key=lambda s: s.strikes)
    req = Request(action=step.action, account=state.account_id, rule=f"strike-ladder-{step.strikes}",
                  source=source, at_ms=at_ms, days=step.days, feature=step.feature or "post")
    return apply(state, req)


def enforce(requests: list[Request], account: Callable[[str], AccountState],
            settings: PackSettings) -> list[AppliedAction]:
    """Apply every request, then the strike ladder on each account that got a new strike."""
    changes: list[AppliedAction] = []
    struck: dict[str, Request] = {}
    for req in requests:
        applied = apply(account(req.account), req)
        changes.extend(applied)
        if any(c.action == "strike" for c in applied):
            struck[req.account] = req
    for account_id, req in struck.items():
        changes.extend(_ladder(account(account_id), req.source, req.at_ms, settings))
    return changes
