"""Turning policy's requests (and moderators' actions) into applied changes, with the strike ladder.

The ladder (pack.yaml `strikes.ladder`) is the graduated response of S15: a first offence gets the rule's
own soft measure; accumulated strikes escalate to restriction, suspension, and only then a ban.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from typing import Any

from pydantic import BaseModel

from clearcircle.enforcement.actions import Request, apply
from clearcircle.enforcement.state import AccountState, LedgerEntry, Measure
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
    """Apply every request, then the strike ladder on each account that got a new strike. Each request is
    kept in its account's ledger (whether it changed anything or not), so it can be reversed exactly."""
    return _enforce(requests, account, settings, log=True)


def _enforce(requests: list[Request], account: Callable[[str], AccountState], settings: PackSettings,
             log: bool) -> list[AppliedAction]:
    """`enforce`; log=False leaves the ledger alone (folding into a base, whose ledger nobody reads)."""
    changes: list[AppliedAction] = []
    struck: dict[str, Request] = {}
    for req in requests:
        state = account(req.account)
        if log:
            _log(state, req, settings)
        applied = apply(state, req)
        changes.extend(applied)
        if any(c.action == "strike" for c in applied):
            struck[req.account] = req
    for account_id, req in struck.items():
        changes.extend(_ladder(account(account_id), req.source, req.at_ms, settings))
    return changes


# --- the ledger and reversal (S15: an overturn restores the account as if the action had never been taken) -------

# What enforcement owns in the state; a reversal rebuilds exactly these and leaves the rest (type, friends,
# reports) alone.
ENFORCEMENT_FIELDS = ("labels", "restrictions", "reach_limit", "suspension", "ban", "strikes", "reviews")
LEDGER_MAX = 200  # requests kept per account; older ones are folded into `ledger_base`


def _entry(req: Request) -> LedgerEntry:
    # validated from a dict: the same checks as LedgerEntry(...), without the keyword-argument wrapper
    # (this runs for every request)
    return LedgerEntry.model_validate({"action": req.action, "rule": req.rule, "source": req.source,
                                       "at_ms": req.at_ms, "days": req.days, "feature": req.feature,
                                       "label": req.label, "strike": req.strike, "strike_days": req.strike_days})


def _request(account_id: str, e: LedgerEntry) -> Request:
    return Request(action=e.action, account=account_id, rule=e.rule, source=e.source, at_ms=e.at_ms, days=e.days,
                   feature=e.feature, label=e.label, strike=e.strike, strike_days=e.strike_days)


_SNAPSHOT_FIELDS = frozenset(ENFORCEMENT_FIELDS)


def _snapshot(state: AccountState) -> dict[str, Any]:
    return state.model_dump(include=_SNAPSHOT_FIELDS)


def _base(state: AccountState) -> AccountState:
    """A state holding only what the ledger's folded-away requests built (nothing when none were folded)."""
    return AccountState.model_validate({"account_id": state.account_id, **(state.ledger_base or {})})


# Folding runs on every request of an account whose ledger is full, so the base it folds into is kept as a
# model between folds instead of being re-validated from `ledger_base` each time. Keyed by the id of the
# `ledger_base` dict the base was dumped to (the entry holds that dict, so the id stays its own): a state
# whose `ledger_base` was replaced, reloaded or copied finds no entry and validates as before. An entry is
# taken out while its base is folded into, so no two states can share a base being changed.
_Dumps = dict[int, tuple[BaseModel, dict[str, Any]]]  # id(measure or strike) -> (it, its model_dump())
_FOLDED: dict[int, tuple[dict[str, Any], AccountState, _Dumps]] = {}
_FOLDED_MAX = 1024  # accounts folding at once; past it the least recent goes (it only costs a re-validation)


def _take_base(state: AccountState) -> tuple[AccountState, _Dumps]:
    """The base to fold into: the kept model when it is the one `state.ledger_base` was dumped from."""
    held = _FOLDED.pop(id(state.ledger_base), None)
    if held is not None and held[0] is state.ledger_base and held[1].account_id == state.account_id:
        return held[1], held[2]
    return _base(state), {}


def _keep_base(snapshot: dict[str, Any], base: AccountState, dumps: _Dumps) -> None:
    _FOLDED[id(snapshot)] = (snapshot, base, dumps)
    if len(_FOLDED) > _FOLDED_MAX:
        try:
            del _FOLDED[next(iter(_FOLDED))]
        except (KeyError, StopIteration, RuntimeError):  # another thread evicted it first
            pass


def _fold_snapshot(base: AccountState, dumps: _Dumps) -> tuple[dict[str, Any], _Dumps]:
    """`_snapshot(base)`, dumping only the measures and strikes the last fold made: they are never changed in
    place (a change is a new Measure or Strike), so an unchanged object's dump is the one from the last fold.
    Returns the dumps of this snapshot's objects, for the next fold."""
    kept: _Dumps = {}

    def dump(model: BaseModel | None) -> dict[str, Any] | None:
        if model is None:
            return None
        held = dumps.get(id(model))
        if held is None or held[0] is not model:
            held = (model, model.model_dump())
        kept[id(model)] = held
        return held[1]

    snapshot = {
        "labels": {k: dump(m) for k, m in base.labels.items()},
        "restrictions": {k: dump(m) for k, m in base.restrictions.items()},
        "reach_limit": dump(base.reach_limit),
        "suspension": dump(base.suspension),
        "ban": dump(base.ban),
        "strikes": [dump(s) for s in base.strikes],
        "reviews": dict(base.reviews),
    }
    return snapshot, kept


def _replay(work: AccountState, entries: list[LedgerEntry], settings: PackSettings, log: bool = True) -> None:
    """Apply the entries to `work` one event at a time (as the pipeline did: the ladder runs per event),
    keeping them in its ledger unless log=False."""
    for _source, group in groupby(entries, key=lambda e: e.source):
        _enforce([_request(work.account_id, e) for e in group], lambda _a: work, settings, log)


def _log(state: AccountState, req: Request, settings: PackSettings) -> None:
    state.ledger.append(_entry(req))
    if len(state.ledger) > LEDGER_MAX:  # fold the oldest event's requests into the base
        first = state.ledger[0].source
        n = next((i for i, e in enumerate(state.ledger) if e.source != first), len(state.ledger))
        base, dumps = _take_base(state)
        _replay(base, state.ledger[:n], settings, log=False)  # the base's measures, not its ledger, are kept
        state.ledger_base, dumps = _fold_snapshot(base, dumps)
        _keep_base(state.ledger_base, base, dumps)
        del state.ledger[:n]


def _what_changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names of the measures and strikes that differ between two snapshots ("ban", "label:spam", "strike:r")."""
    out: list[str] = []
    for name in ("ban", "suspension", "reach_limit"):
        if before[name] != after[name]:
            out.append(name)
    for group, prefix in (("labels", "label:"), ("restrictions", "restriction:")):
        out += [prefix + k for k in sorted(set(before[group]) | set(after[group]))
                if before[group].get(k) != after[group].get(k)]
    kept = [tuple(sorted(s.items())) for s in after["strikes"]]
    out += [f"strike:{s['rule']}" for s in before["strikes"] if tuple(sorted(s.items())) not in kept]
    out += [f"review:{rule}" for rule in sorted(set(before["reviews"]) - set(after["reviews"]))]
    return out


def _remove_by_source(state: AccountState, source: str) -> None:
    """The fallback when the ledger cannot explain the state (written before the ledger existed, or the
    request was folded away): drop what the event itself set. Exact unless a later request extended it."""
    state.strikes = [s for s in state.strikes if s.source != source]
    for name in ("ban", "suspension", "reach_limit"):
        measure: Measure | None = getattr(state, name)
        if measure is not None and measure.source == source:
            setattr(state, name, None)
    for group in (state.labels, state.restrictions):
        for key in [k for k, m in group.items() if m.source == source]:
            del group[key]


def reverse(state: AccountState, source: str, rule: str, settings: PackSettings) -> list[AppliedAction]:
    """Undo every request event `source` made to this account, as if it had never been made.

    The account's measures, strikes and case marks are rebuilt from its ledger without that event's requests,
    through the same action registry and strike ladder, so a strike the event gave no longer counts towards a
    later escalation, and a later, shorter measure the overturned one had swallowed comes back as it would have
    been. Returns one `reverse` change naming what changed (empty if nothing did); `rule` names who reversed
    it (an appeal, a case decision).
    """
    before = _snapshot(state)
    check = _base(state)
    _replay(check, state.ledger, settings)
    if _snapshot(check) == before and any(e.source == source for e in state.ledger):
        work = _base(state)
        _replay(work, [e for e in state.ledger if e.source != source], settings)
        for name in ENFORCEMENT_FIELDS:
            setattr(state, name, getattr(work, name))
        state.ledger = work.ledger
        exact = True
    else:
        _remove_by_source(state, source)
        state.ledger = [e for e in state.ledger if e.source != source]
        exact = False
    changed = _what_changed(before, _snapshot(state))
    if not changed:
        return []
    return [AppliedAction(account=state.account_id, action="reverse", rule=rule,
                          detail={"event_id": source, "changed": changed, "exact": exact})]
