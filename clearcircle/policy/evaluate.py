"""Evaluating a pack's rules for one event: which fire, in which mode, the verdict and the actions asked for.

Policy decides and never touches the database: it reads signal values (lazily) and returns requests that
enforcement applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clearcircle.policy.expr import ConditionRuntimeError
from clearcircle.policy.pack import Pack, Rule
from clearcircle.policy.rules import Action
from clearcircle.policy.verdicts import strongest
from clearcircle.signals.context import SignalValues
from clearcircle.signals.text import text_hits

if TYPE_CHECKING:
    from clearcircle.policy.campaigns import Patch


@dataclass(frozen=True)
class ActionRequest:
    """Enforcement is asked to apply `action` to `account` because `rule` fired on `source`."""

    account: str
    action: Action
    rule: str
    source: str
    at_ms: int


@dataclass
class Evaluation:
    verdict: str
    fired: list[Rule] = field(default_factory=list)
    shadow: list[Rule] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)  # validated as Evidence in tests
    requests: list[ActionRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    campaigns: list[str] = field(default_factory=list)  # S12: campaigns that changed this evaluation


def subject_of(rule: Rule, event: Any) -> str | None:
    """The account a rule acts on: the actor, or an account named in the body."""
    if rule.spec.subject == "actor":
        return event.actor
    return getattr(event.body, rule.spec.subject, None)


def _evidence(rule: Rule, values: SignalValues) -> list[dict[str, Any]]:
    """Evidence items in the wire shape of `Evidence` (plain dicts: this runs for every rule hit)."""
    out = [{"rule": rule.id, "signal": name, "value": values[name]} for name in sorted(rule.condition.names)]
    if any(name.startswith("text.") for name in rule.condition.names):
        hits = text_hits(values.ctx)
        wanted = {fh.hit.category for fh in hits} & rule.condition.strings
        for fh in hits:
            if not wanted or fh.hit.category in wanted:
                out.append({"rule": rule.id, "signal": "text.evidence", "field": fh.field,
                            "span": [fh.hit.start, fh.hit.end], "text": fh.hit.text, "category": fh.hit.category})
    return out


def evaluate(pack: Pack, values: SignalValues, patches: Mapping[str, Patch] | None = None) -> Evaluation:
    """Run every rule of the pack that reads this event type; enforce-mode hits set the verdict.

    `patches` (rule id -> Patch) are the active campaigns' overrides (clearcircle.policy.campaigns): a patched
    rule is evaluated as the campaigns make it, and the campaigns that changed its outcome are named.
    """
    event = values.ctx.event
    result = Evaluation(verdict="allow")
    for rule in pack.by_event.get(event.type, ()):
        patch = patches.get(rule.id) if patches else None
        try:
            hit = rule.condition.evaluate(values) if patch is None else patch.evaluate(values, result.campaigns)
        except ConditionRuntimeError as exc:
            result.errors.append(f"{rule.id}: {exc}")
            continue
        if patch is not None:
            rule = patch.rule
        if not hit:
            continue
        result.evidence.extend(_evidence(rule, values))
        if rule.spec.mode == "shadow":
            result.shadow.append(rule)
            continue
        result.fired.append(rule)
        account = subject_of(rule, event)
        if account is not None:
            result.requests.append(ActionRequest(account, rule.action, rule.id, event.id, values.ctx.at_ms))
    result.verdict = strongest([r.action.type for r in result.fired])
    return result
