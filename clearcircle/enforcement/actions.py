"""The one registry of enforcement actions, each a function (state, request) -> changes.

Applying an action is idempotent: a measure only ever extends (a later end, or permanent), a strike is
keyed by its source event and rule, so applying the same request twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clearcircle.enforcement.state import DAY_MS, AccountState, Measure, Strike
from clearcircle.policy.decision import AppliedAction

DEFAULT_DAYS = {"limit_reach": 7.0, "restrict": 7.0, "suspend": 7.0}


@dataclass(frozen=True)
class Request:
    """A concrete action on one account (from a rule, the strike ladder or a moderator)."""

    action: str
    account: str
    rule: str
    source: str
    at_ms: int
    days: float | None = None
    feature: str | None = None
    label: str | None = None
    strike: bool = False
    strike_days: float = 90.0

    def until(self, default_days: float | None) -> int | None:
        days = self.days if self.days is not None else default_days
        return None if days is None else self.at_ms + int(days * DAY_MS)


ActionFn = Callable[[AccountState, Request], list[AppliedAction]]
ACTIONS: dict[str, ActionFn] = {}


def action(name: str) -> Callable[[ActionFn], ActionFn]:
    def wrap(fn: ActionFn) -> ActionFn:
        if name in ACTIONS:
            raise ValueError(f"action {name!r} registered twice")
        ACTIONS[name] = fn
        return fn

    return wrap


def _extended(current: Measure | None, req: Request, until: int | None) -> Measure | None:
    """The measure after asking for one from the request's time to `until` (None: never), or None if that
    changes nothing.

    Events carry their own time and may arrive late, so this merges periods rather than trusting arrival
    order: a measure only ever lengthens, a request stamped before a lift cannot revive what was lifted, and
    a request that overlaps the existing period extends it back to the earlier start.
    """
    if current is not None and current.lifted_ms is not None:
        if req.at_ms < current.lifted_ms:
            return None
        current = None
    if current is None:
        return Measure(since_ms=req.at_ms, until_ms=until, source=req.source, rule=req.rule)
    if current.until_ms is None or (until is not None and until <= current.until_ms):
        return None
    overlaps = req.at_ms <= current.until_ms
    since = min(current.since_ms, req.at_ms) if overlaps else req.at_ms
    return Measure(since_ms=since, until_ms=until, source=req.source, rule=req.rule)


def _changed(req: Request, name: str, **detail: object) -> list[AppliedAction]:
    return [AppliedAction(account=req.account, action=name, rule=req.rule, detail=detail)]


MAX_STRIKES = 100  # beyond the top of any ladder; keeps state and look-ups bounded


def _add_strike(state: AccountState, req: Request) -> list[AppliedAction]:
    if not req.strike or (state.ban is not None and state.ban.active(req.at_ms)):
        return []  # a banned account has nothing left to escalate to
    if any(s.source == req.source and s.rule == req.rule for s in state.strikes):
        return []
    expires = req.at_ms + int(req.strike_days * DAY_MS)
    live = [s for s in state.strikes if s.expires_ms > req.at_ms]  # decayed strikes are dropped
    state.strikes = live[-(MAX_STRIKES - 1):]
    state.strikes.append(Strike(source=req.source, rule=req.rule, at_ms=req.at_ms, expires_ms=expires))
    return _changed(req, "strike", expires_ms=expires)


@action("label")
def _label(state: AccountState, req: Request) -> list[AppliedAction]:
    name = req.label or req.rule
    until = req.until(None)
    out: list[AppliedAction] = []
    if (measure := _extended(state.labels.get(name), req, until)) is not None:
        state.labels[name] = measure
        out = _changed(req, "label", label=name, until_ms=until)
    return out + _add_strike(state, req)


@action("limit_reach")
def _limit_reach(state: AccountState, req: Request) -> list[AppliedAction]:
    until = req.until(DEFAULT_DAYS["limit_reach"])
    out: list[AppliedAction] = []
    if (measure := _extended(state.reach_limit, req, until)) is not None:
        state.reach_limit = measure
        out = _changed(req, "limit_reach", until_ms=until)
    return out + _add_strike(state, req)


@action("remove")
def _remove(state: AccountState, req: Request) -> list[AppliedAction]:
    # the content itself is removed by the platform on the verdict; the account keeps a strike
    return _add_strike(state, req)


REVIEW_REOPEN_DAYS = 7


@action("review")
def _review(state: AccountState, req: Request) -> list[AppliedAction]:
    """Open a case, unless this rule opened one for the account in the last 7 days (a burst of reports is
    one case for a moderator, not one per report)."""
    last = state.reviews.get(req.rule)
    if last is not None and last <= req.at_ms < last + REVIEW_REOPEN_DAYS * DAY_MS:
        return _add_strike(state, req)
    if last is not None and req.at_ms < last:
        return _add_strike(state, req)  # stamped before a case this rule already opened
    state.reviews[req.rule] = req.at_ms
    return _changed(req, "case_opened") + _add_strike(state, req)


@action("restrict")
def _restrict(state: AccountState, req: Request) -> list[AppliedAction]:
    feature = req.feature or "post"
    until = req.until(DEFAULT_DAYS["restrict"])
    out: list[AppliedAction] = []
    if (measure := _extended(state.restrictions.get(feature), req, until)) is not None:
        state.restrictions[feature] = measure
        out = _changed(req, "restrict", feature=feature, until_ms=until)
    return out + _add_strike(state, req)


@action("suspend")
def _suspend(state: AccountState, req: Request) -> list[AppliedAction]:
    until = req.until(DEFAULT_DAYS["suspend"])
    out: list[AppliedAction] = []
    if (measure := _extended(state.suspension, req, until)) is not None:
        state.suspension = measure
        out = _changed(req, "suspend", until_ms=until)
    return out + _add_strike(state, req)


@action("ban")
def _ban(state: AccountState, req: Request) -> list[AppliedAction]:
    strike = _add_strike(state, req)  # before the ban: a banned account takes no new strikes
    out: list[AppliedAction] = []
    if (measure := _extended(state.ban, req, None)) is not None:
        state.ban = measure
        out = _changed(req, "ban")
    return out + strike


def _end(measure: Measure | None, at_ms: int) -> Measure | None:
    if measure is None or not measure.active(at_ms):
        return None
    return measure.model_copy(update={"until_ms": at_ms, "lifted_ms": at_ms})


@action("lift")
def _lift(state: AccountState, req: Request) -> list[AppliedAction]:
    """End every active measure (a moderator's release); strikes stay, they decay on their own."""
    lifted: list[str] = []
    for attr in ("ban", "suspension", "reach_limit"):
        ended = _end(getattr(state, attr), req.at_ms)
        if ended is not None:
            setattr(state, attr, ended)
            lifted.append(attr)
    for group, prefix in ((state.restrictions, "restriction:"), (state.labels, "label:")):
        for key, measure in list(group.items()):
            ended = _end(measure, req.at_ms)
            if ended is not None:
                group[key] = ended
                lifted.append(prefix + key)
    return _changed(req, "lift", lifted=lifted) if lifted else []


def apply(state: AccountState, req: Request) -> list[AppliedAction]:
    """Apply one request to the state in place; returns what actually changed (empty if nothing)."""
    try:
        fn = ACTIONS[req.action]
    except KeyError:
        raise ValueError(f"unknown action {req.action!r}; known: {', '.join(sorted(ACTIONS))}") from None
    return fn(state, req)
