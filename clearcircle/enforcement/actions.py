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


def _measure_action(name: str, default_days: float | None, slot: Callable[[Request], str | None],
                    permanent: bool = False) -> ActionFn:
    """An action that sets one time-boxed measure: `slot` names its key in a dict of the state (a label
    name, a restricted feature) or None for the account-wide measure stored under the action's name."""
    attr = {"label": "labels", "restrict": "restrictions", "limit_reach": "reach_limit",
            "suspend": "suspension", "ban": "ban"}[name]

    def apply_measure(state: AccountState, req: Request) -> list[AppliedAction]:
        strike = _add_strike(state, req)  # first: a ban applied now must not refuse its own strike
        until = None if permanent else req.until(default_days)
        key = slot(req)
        holder = getattr(state, attr)
        current = holder.get(key) if key is not None else holder
        measure = _extended(current, req, until)
        if measure is None:
            return strike
        if key is not None:
            holder[key] = measure
        else:
            setattr(state, attr, measure)
        detail = {} if permanent else {"until_ms": until}
        if key is not None:
            detail = {"label" if name == "label" else "feature": key, **detail}
        return _changed(req, name, **detail) + strike

    return action(name)(apply_measure)


_measure_action("label", None, lambda req: req.label or req.rule)
_measure_action("limit_reach", DEFAULT_DAYS["limit_reach"], lambda req: None)
_measure_action("restrict", DEFAULT_DAYS["restrict"], lambda req: req.feature or "post")
_measure_action("suspend", DEFAULT_DAYS["suspend"], lambda req: None)
_measure_action("ban", None, lambda req: None, permanent=True)


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
