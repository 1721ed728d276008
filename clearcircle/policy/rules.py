"""The rule and pack models: what a policy file may say, validated with pydantic.

A rule cites the operating norm it enforces (an S-number of SPEC.md plus a human citation), names the
event types it reads, a condition over signals, an action and a mode (`enforce` or `shadow`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from clearcircle.events.features import FEATURES
from clearcircle.events.schemas import EVENT_TYPES

RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]
ActionType = Literal["label", "limit_reach", "review", "remove", "restrict", "suspend", "ban"]
Subject = Literal["actor", "target", "seller", "referee", "item_owner"]


class Norm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: Annotated[str, StringConstraints(pattern=r"^S(?:[1-9]|1[0-6])$")]
    citation: Annotated[str, StringConstraints(min_length=3, max_length=500)]


class Action(BaseModel):
    """What a rule does when it fires in enforce mode."""

    model_config = ConfigDict(extra="forbid")
    type: ActionType
    days: Annotated[float, Field(gt=0, le=3650)] | None = None  # None: permanent where that applies
    feature: str | None = None  # restrict: which feature; default the event's own
    label: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_:-]{1,64}$")] | None = None
    strike: bool | None = None  # default: remove/restrict/suspend/ban give a strike

    def gives_strike(self) -> bool:
        if self.strike is not None:
            return self.strike
        return self.type in ("remove", "restrict", "suspend", "ban")


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: RuleId
    description: Annotated[str, StringConstraints(min_length=3, max_length=500)]
    norm: Norm
    category: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]
    events: Annotated[list[Literal[EVENT_TYPES]], Field(min_length=1)]  # type: ignore[valid-type]
    when: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    action: Action | ActionType
    severity: Annotated[int, Field(ge=1, le=5)]
    mode: Literal["enforce", "shadow"] = "enforce"
    subject: Subject = "actor"

    def resolved_action(self) -> Action:
        return self.action if isinstance(self.action, Action) else Action(type=self.action)


class LadderStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strikes: Annotated[int, Field(ge=1, le=100)]
    action: Literal["restrict", "suspend", "ban"]
    days: Annotated[float, Field(gt=0, le=3650)] | None = None
    feature: str | None = None


class Strikes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decay_days: Annotated[float, Field(gt=0, le=3650)] = 90
    ladder: list[LadderStep] = []


class PackSettings(BaseModel):
    """pack.yaml: the pack's name, strike ladder and text weights."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    description: str = ""
    strikes: Strikes = Strikes()
    category_weights: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    default_days: dict[str, Annotated[float, Field(gt=0, le=3650)]] = {}


def check_feature(feature: str | None) -> str | None:
    """Refuse a restriction on a feature the platform does not have (a typo would restrict nothing)."""
    if feature is not None and feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; known: {', '.join(sorted(FEATURES))}")
    return feature
