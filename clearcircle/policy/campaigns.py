"""Campaign overlays (S12): a time-boxed set of stricter overrides laid over the pack, switched on without a deploy.

A regulator's month-long special campaign asks for stricter thresholds, stronger actions and rules that were
only watched (shadow) to be enforced, for a while. Policy staff write it as data, like a pack rule:

```yaml
name: food-safety-2026-03            # lower case, digits, dashes; unique for ever (decisions name it)
description: Special campaign against unlicensed food sales
starts_at: 2026-03-01T00:00:00+08:00  # RFC 3339 with offset; active from this instant (inclusive)
ends_at: 2026-04-01T00:00:00+08:00    # ... until this one (exclusive)
scope:                               # every part optional; empty means everything
  categories: [food, marketing]      # the rules it may touch, by their `category`
  surfaces: [moments]                # only posts on these surfaces (then only post_created events)
  account_classes: [personal]        # only events whose actor is of these classes
overrides:
  moments-marketing-volume:
    thresholds: {counters.posts_1d: 3}   # every `counters.posts_1d <op> <number>` in the rule gets 3
  unlicensed-food-sale:
    action: {type: restrict, feature: post_moments, days: 7}
  follow-burst:
    mode: enforce                    # a shadow rule acts during the campaign
    when: counters.follows_1h > 50   # or replace the whole condition
  "*": {mode: enforce}               # every in-scope rule enforced
```

Validated at creation as the pack validates its rules: conditions compile against the signal registry
(clearcircle.policy.expr), overridden rules exist and fall in the campaign's scope, and a campaign only makes
policy stricter where that can be checked: a replacement action is at least as strong as the rule's own, a
threshold moves only in the direction that makes the rule fire more often (`x > 10` -> `x > 5`; `x < 3` ->
`x < 5`; inside a `not` the other way). A whole condition replaced by `when` is taken as written.

Active exactly within its window by the EVENT's time: ``starts_at <= occurred_at < ends_at`` (ending it early
moves the end to the moment it was ended). The pipeline keeps a compiled copy and re-reads the store when the
campaign history grew (one count per batch), so a campaign created through the API or the CLI applies from
the next batch on, with no restart.

Overlapping campaigns (several active and in scope for one event, touching one rule):

- mode: the rule is enforced if any of them switches it to enforce;
- condition (`when` or `thresholds`): the most recently started campaign wins (ties: the one created later,
  then the later name), since a later campaign is the regulator's latest word;
- action: the strongest action wins (verdict order allow < label < limit_reach < review < remove < restrict
  < suspend < ban); equal strength: the most recently started, as for conditions.

A decision names (`campaigns`) every campaign that changed it: whose condition made the rule's outcome
differ from the pack's, whose mode switch made a firing rule act, or whose action replaced the rule's own.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from clearcircle.policy.expr import Condition, ConditionRuntimeError, ExprError, compile_condition
from clearcircle.policy.pack import Pack, Rule
from clearcircle.policy.rules import Action, ActionType, check_feature
from clearcircle.policy.verdicts import rank
from clearcircle.signals.registry import SignalRegistry

if TYPE_CHECKING:
    from clearcircle.enforcement.state import AccountState
    from clearcircle.events.schemas import Event

CampaignName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]
ALL_RULES = "*"
ACCOUNT_CLASSES = ("personal", "subscription", "service", "merchant", "verified_brand", "unknown")
AccountClass = Literal["personal", "subscription", "service", "merchant", "verified_brand", "unknown"]
Surface = Literal["moments", "article", "comment"]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]
Threshold = Annotated[float, Field(allow_inf_nan=False)] | int


class Scope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: list[Category] = []
    surfaces: list[Surface] = []
    account_classes: list[AccountClass] = []


class RuleOverride(BaseModel):
    """What a campaign changes in one rule (or, under "*", in every rule of its scope: `mode` only)."""

    model_config = ConfigDict(extra="forbid")
    when: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None
    thresholds: dict[Annotated[str, StringConstraints(min_length=1, max_length=200)], Threshold] = {}
    action: Action | ActionType | None = None
    mode: Literal["enforce"] | None = None

    def resolved_action(self) -> Action | None:
        if self.action is None:
            return None
        return self.action if isinstance(self.action, Action) else Action(type=self.action)


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CampaignName
    description: Annotated[str, StringConstraints(max_length=1000)] = ""
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    scope: Scope = Scope()
    overrides: Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], RuleOverride],
                         Field(min_length=1)]

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if isinstance(value, datetime):  # YAML reads an unquoted timestamp as one
            return value
        if not isinstance(value, str):
            raise ValueError("an RFC 3339 time with offset, e.g. 2026-03-01T00:00:00+08:00")
        return value

    @property
    def starts_ms(self) -> int:
        return _ms(self.starts_at)

    @property
    def ends_ms(self) -> int:
        return _ms(self.ends_at)

    def wire(self) -> dict[str, Any]:
        """As stored and shown: JSON-ready, times in RFC 3339 with the offset they were written with."""
        return self.model_dump(mode="json", exclude_defaults=False)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class CampaignError(ValueError):
    """The campaign is invalid; `problems` lists each with its field path (`overrides.rule-id.when`)."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))


# -- thresholds -------------------------------------------------------------------------------------------------

_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}


def _number(node: ast.expr) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return None if inner is None else -inner
    return None


def _key(text: str) -> str:
    """A threshold key (a signal name, or any expression) in a form independent of spacing."""
    return ast.dump(ast.parse(text.strip(), mode="eval").body)


def apply_thresholds(source: str, thresholds: Mapping[str, float]) -> str:
    """The condition with the number each threshold key is compared against replaced; raises ValueError naming
    the key when the key is compared with no number, with == / != / in, or when the new number would make the
    rule fire less often (a campaign only tightens)."""
    tree = ast.parse(source.strip(), mode="eval")
    wanted: dict[str, tuple[str, float]] = {}
    for key, value in thresholds.items():
        try:
            wanted[_key(key)] = (key, value)
        except SyntaxError:
            raise ValueError(f"{key}: not an expression of the condition language") from None
    found: set[str] = set()

    def compare(node: ast.Compare, negated: bool) -> None:
        if len(node.ops) != 1:
            return
        for side, other, mirrored in ((node.left, node.comparators[0], False), (node.comparators[0], node.left, True)):
            dumped = ast.dump(side)
            if dumped not in wanted or _number(other) is None:
                continue
            key, new = wanted[dumped]
            op = type(node.ops[0])
            if op not in _FLIP:
                raise ValueError(f"{key}: compared with {ast.unparse(node)!r}, not a threshold (<, <=, >, >=)")
            op = _FLIP[op] if mirrored else op
            fires_above = op in (ast.Gt, ast.GtE)  # `key > n`: a lower n fires more often
            if negated:
                fires_above = not fires_above
            old = _number(other)
            if (fires_above and new > old) or (not fires_above and new < old):
                raise ValueError(f"{key}: {new} would make {ast.unparse(node)!r} fire less often; a campaign "
                                 "only tightens (change the pack to loosen)")
            constant = ast.Constant(new)
            if mirrored:
                node.left = constant
            else:
                node.comparators[0] = constant
            found.add(dumped)

    def visit(node: ast.AST, negated: bool) -> None:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            visit(node.operand, not negated)
            return
        if isinstance(node, ast.Compare):
            compare(node, negated)
        for child in ast.iter_child_nodes(node):
            visit(child, negated)

    visit(tree.body, False)
    for dumped, (key, _value) in wanted.items():
        if dumped not in found:
            raise ValueError(f"{key}: the rule's condition compares no {key!r} with a number")
    return ast.unparse(tree)


# -- compiling against a pack ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledOverride:
    condition: Condition | None
    action: Action | None
    enforce: bool


@dataclass(frozen=True)
class CompiledCampaign:
    """A campaign ready for the hot path: window in ms, scope as sets, overrides per rule id."""

    name: str
    starts_ms: int
    until_ms: int  # the end, or when it was ended if earlier (exclusive)
    created_ms: int
    categories: frozenset[str]
    surfaces: frozenset[str]
    classes: frozenset[str]
    overrides: Mapping[str, CompiledOverride]
    problems: tuple[dict[str, str], ...] = ()

    def applies(self, event: Event, at_ms: int, account_class: str) -> bool:
        if not self.starts_ms <= at_ms < self.until_ms:
            return False
        if self.surfaces and (event.type != "post_created" or event.body.surface not in self.surfaces):
            return False
        return not self.classes or account_class in self.classes

    def in_scope(self, rule: Rule) -> bool:
        return not self.categories or rule.spec.category in self.categories

    @property
    def order(self) -> tuple[int, int, str]:
        """Later wins: most recently started, then created later, then the later name."""
        return self.starts_ms, self.created_ms, self.name


def _condition(source: str, rule: Rule, registry: SignalRegistry) -> Condition:
    condition = compile_condition(source, registry.types())
    for name in sorted(condition.names):
        if not any(registry[name].applies_to(t) for t in rule.spec.events):
            raise ExprError(f"signal {name!r} is never computed for {', '.join(rule.spec.events)}")
    return condition


def compile_campaign(spec: CampaignSpec, pack: Pack, registry: SignalRegistry, *, created_ms: int = 0,
                     ended_ms: int | None = None) -> CompiledCampaign:
    """Compile every override against the pack; problems are collected (field path, message), and an override
    with a problem is left out, so a stored campaign survives a pack change with what still applies."""
    problems: list[dict[str, str]] = []
    rules = {r.id: r for r in pack.rules}
    categories = frozenset(spec.scope.categories)
    surfaces = frozenset(spec.scope.surfaces)

    def problem(where: str, message: str) -> None:
        problems.append({"field": where, "message": message})

    if spec.ends_at <= spec.starts_at:
        problem("ends_at", "must be after starts_at")
    compiled: dict[str, CompiledOverride] = {}
    enforce_all = False
    for rule_id, override in spec.overrides.items():
        where = f"overrides.{rule_id}"
        if rule_id == ALL_RULES:
            if override.when or override.thresholds or override.action is not None or override.mode is None:
                problem(where, f'"{ALL_RULES}" takes only `mode: enforce` (name a rule to change its condition '
                               "or action)")
            else:
                enforce_all = True
            continue
        rule = rules.get(rule_id)
        if rule is None:
            problem(where, f"no rule {rule_id!r} in pack {pack.name!r}")
            continue
        if categories and rule.spec.category not in categories:
            problem(where, f"rule {rule_id!r} is in category {rule.spec.category!r}, outside the campaign's scope "
                           f"categories ({', '.join(sorted(categories))})")
            continue
        if surfaces and "post_created" not in rule.spec.events:
            problem(where, f"rule {rule_id!r} reads {', '.join(rule.spec.events)}: with scope.surfaces the "
                           "campaign applies to posts only")
            continue
        if override.when is None and not override.thresholds and override.action is None and override.mode is None:
            problem(where, "changes nothing: give when, thresholds, action or mode")
            continue
        condition = None
        try:
            if override.when is not None and override.thresholds:
                raise ValueError("give either `when` or `thresholds`, not both")
            if override.when is not None:
                condition = _condition(override.when, rule, registry)
            elif override.thresholds:
                try:
                    source = apply_thresholds(rule.spec.when, override.thresholds)
                except ValueError as exc:
                    problem(f"{where}.thresholds", str(exc))
                    continue
                condition = _condition(source, rule, registry)
        except ExprError as exc:
            col = f" (column {exc.col + 1})" if exc.col is not None else ""
            problem(f"{where}.when", f"{exc.message}{col}" + (f"; {exc.hint}" if exc.hint else ""))
            continue
        except ValueError as exc:
            problem(where, str(exc))
            continue
        action = override.resolved_action()
        if action is not None:
            try:
                check_feature(action.feature)
            except ValueError as exc:
                problem(f"{where}.action.feature", str(exc))
                continue
            if rank(action.type) < rank(rule.action.type):
                problem(f"{where}.action", f"{action.type} is weaker than the rule's own {rule.action.type}; a "
                                           "campaign only strengthens actions")
                continue
        compiled[rule_id] = CompiledOverride(condition, action, override.mode == "enforce")
    if enforce_all:  # "*" adds enforcement to every rule of the scope, on top of any rule's own override
        for rule in pack.rules:
            if not categories or rule.spec.category in categories:
                own = compiled.get(rule.id)
                compiled[rule.id] = CompiledOverride(None, None, True) if own is None else \
                    dataclasses.replace(own, enforce=True)
    until = spec.ends_ms if ended_ms is None else min(spec.ends_ms, ended_ms)
    return CompiledCampaign(spec.name, spec.starts_ms, until, created_ms, categories, surfaces,
                            frozenset(spec.scope.account_classes), compiled, tuple(problems))


def parse_campaign(data: Any, pack: Pack, registry: SignalRegistry) -> CampaignSpec:
    """Validate a campaign as sent (API body or YAML file) against the pack; raises CampaignError listing every
    problem with its field path."""
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise CampaignError([{"field": ".".join(str(p) for p in e["loc"]) or "(campaign)", "message": e["msg"]}
                             for e in exc.errors(include_url=False, include_input=False)]) from None
    check_campaign(spec, pack, registry)
    return spec


def check_campaign(spec: CampaignSpec, pack: Pack, registry: SignalRegistry) -> None:
    """Raise CampaignError if any override does not compile against the pack (see compile_campaign)."""
    problems = compile_campaign(spec, pack, registry).problems
    if problems:
        raise CampaignError(list(problems))


def campaign_status(campaign: Mapping[str, Any], at_ms: int) -> str:
    """scheduled / active / finished by the window, or ended (ended early by staff), at a moment."""
    if campaign["ended_ms"] is not None and campaign["ended_ms"] <= at_ms:
        return "ended"
    if at_ms < campaign["starts_ms"]:
        return "scheduled"
    return "active" if at_ms < campaign["ends_ms"] else "finished"


# -- resolving overlaps into per-rule patches --------------------------------------------------------------------------


@dataclass(frozen=True)
class Patch:
    """One rule as the active campaigns make it, and who changed what (for naming them in the decision)."""

    rule: Rule  # the effective rule: condition, mode and action as overridden
    base: Rule
    condition_by: str | None
    mode_by: tuple[str, ...]
    action_by: str | None

    def evaluate(self, values: Mapping[str, Any], named: list[str]) -> bool:
        """Whether the effective rule fires; appends to `named` the campaigns that changed the outcome."""
        hit = self.rule.condition.evaluate(values)
        if self.condition_by is not None:
            try:
                base_hit = self.base.condition.evaluate(values)
            except ConditionRuntimeError:
                base_hit = False
            if hit != base_hit:
                _name(named, self.condition_by)
        if hit and self.rule.spec.mode == "enforce":
            if self.base.spec.mode != "enforce":
                for name in self.mode_by:
                    _name(named, name)
            if self.action_by is not None:
                _name(named, self.action_by)
        return hit


def _name(named: list[str], name: str) -> None:
    if name not in named:
        named.append(name)


def resolve(campaigns: tuple[CompiledCampaign, ...], pack: Pack) -> dict[str, Patch]:
    """The per-rule patches of a set of campaigns active together, by the overlap rule of the module docstring."""
    ordered = sorted(campaigns, key=lambda c: c.order)
    patches: dict[str, Patch] = {}
    for rule in pack.rules:
        condition: tuple[str, Condition] | None = None
        action: tuple[str, Action] | None = None
        enforcers: list[str] = []
        for campaign in ordered:
            override = campaign.overrides.get(rule.id)
            if override is None or not campaign.in_scope(rule):
                continue
            if override.condition is not None:
                condition = (campaign.name, override.condition)
            if override.action is not None and rank(override.action.type) >= rank(rule.action.type) and \
                    (action is None or rank(override.action.type) >= rank(action[1].type)):
                action = (campaign.name, override.action)
            if override.enforce and rule.spec.mode != "enforce":
                enforcers.append(campaign.name)
        if condition is None and action is None and not enforcers:
            continue
        effective = dataclasses.replace(
            rule,
            spec=rule.spec.model_copy(update={"mode": "enforce"}) if enforcers else rule.spec,
            action=action[1] if action is not None else rule.action,
            condition=condition[1] if condition is not None else rule.condition,
        )
        action_by = action[0] if action is not None and action[1] != rule.action else None
        patches[rule.id] = Patch(effective, rule, condition[0] if condition else None, tuple(enforcers), action_by)
    return patches


# -- the pipeline's cached copy ----------------------------------------------------------------------------------------


class CampaignSource(Protocol):
    """Where the book reads campaigns from (the store, in the batch's transaction)."""

    def version(self) -> int:
        """Grows with every change (the history's length): equal means nothing changed."""
        ...

    def rows(self) -> list[dict[str, Any]]:
        """Every campaign: spec (dict), created_ms, ended_ms."""
        ...


class CampaignBook:
    """Compiled campaigns for the pipeline, refreshed when the store's campaign history grows or the pack
    changes; per event, the patches of the campaigns active and in scope (memoised per set of campaigns)."""

    def __init__(self, registry: SignalRegistry) -> None:
        self.registry = registry
        self.campaigns: tuple[CompiledCampaign, ...] = ()
        self._version: int | None = None
        self._pack: Pack | None = None
        self._patches: dict[tuple[str, ...], dict[str, Patch]] = {}

    def refresh(self, pack: Pack, source: CampaignSource) -> None:
        version = source.version()
        if version == self._version and pack is self._pack:
            return
        compiled = []
        for row in source.rows():
            spec = CampaignSpec.model_validate(row["spec"])
            compiled.append(compile_campaign(spec, pack, self.registry, created_ms=row["created_ms"],
                                             ended_ms=row["ended_ms"]))
        self.campaigns = tuple(c for c in compiled if c.overrides and c.until_ms > c.starts_ms)
        self._version, self._pack, self._patches = version, pack, {}

    def patches(self, event: Event, at_ms: int, state: AccountState) -> dict[str, Patch] | None:
        """The patches for this event (None: no campaign applies, the pack as it is)."""
        if not self.campaigns or self._pack is None:
            return None
        account_class = state.account_class or state.account_type or "unknown"
        active = tuple(c for c in self.campaigns if c.applies(event, at_ms, account_class))
        if not active:
            return None
        key = tuple(c.name for c in active)
        patches = self._patches.get(key)
        if patches is None:
            patches = self._patches[key] = resolve(active, self._pack)
        return patches

