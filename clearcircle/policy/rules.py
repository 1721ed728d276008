"""The rule and pack models: what a policy file may say, validated with pydantic.

A rule cites the operating norm it enforces (an S-number of SPEC.md plus a human citation), names the
event types it reads, a condition over signals, an action and a mode (`enforce` or `shadow`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

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


# S8/S9: who may do how much. The registered account types are the first three; a verified merchant or brand
# is a class set by the merchant registry on top of its registered type.
ACCOUNT_CLASSES: tuple[str, ...] = ("personal", "subscription", "service", "merchant", "verified_brand")
AccountClass = Literal["personal", "subscription", "service", "merchant", "verified_brand"]
Industry = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]
Limit = Annotated[int, Field(ge=0, le=10_000_000)]
DEFAULT_TIMEZONE = "Asia/Shanghai"


@functools.lru_cache(maxsize=64)
def lookup_order(account_class: str, account_type: str | None) -> tuple[str, ...]:
    """Where a per-class limit is looked up, most specific first: the class, then the registered type.

    A verified merchant that registered as a service account keeps the service push quota unless the pack
    gives merchants their own, so a class never silently loses a limit its type has. Cached: quota signals
    ask on every event, and there are only a handful of (class, type) pairs.
    """
    return tuple(dict.fromkeys(c for c in (account_class, account_type) if c))


class Tiered(BaseModel):
    """A limit by account class, optionally by the class's industry, with a default for everyone else.

    Resolution: the industry tier of the first class in the look-up order that has one for the account's
    industry, else that class's own limit, else the next class's, else `default`. null means no limit.
    """

    model_config = ConfigDict(extra="forbid")
    default: Limit | None = None
    classes: dict[AccountClass, Limit | None] = {}
    industries: dict[AccountClass, dict[Industry, Limit]] = {}

    def limit(self, order: Iterable[str], industry: str | None = None) -> int | None:
        for cls in order:
            if industry is not None and industry in self.industries.get(cls, {}):
                return self.industries[cls][industry]
            if cls in self.classes:
                return self.classes[cls]
        return self.default


class PushQuota(BaseModel):
    """Pushes let through per calendar day or month (in the pack's time zone)."""

    model_config = ConfigDict(extra="forbid")
    limit: Limit
    per: Literal["day", "month"]


class Quotas(BaseModel):
    """pack.yaml `quotas`: per-class limits (S8 friends and friend requests, S9 pushes), checked at arrival.

    The defaults are the built-in pack's, so a pack without a `quotas:` block behaves like the shipped one.
    """

    model_config = ConfigDict(extra="forbid")
    friends: Tiered = Tiered(default=5000, classes={"merchant": 10000, "verified_brand": 20000})
    friend_requests_per_day: Tiered = Tiered(
        default=200, classes={"subscription": 0, "service": 0, "merchant": 500, "verified_brand": 1000})
    pushes: dict[AccountClass, PushQuota] = {
        "subscription": PushQuota(limit=1, per="day"), "service": PushQuota(limit=4, per="month")}

    def push_quota(self, order: Iterable[str]) -> PushQuota | None:
        """The push quota of the first class in the look-up order that has one; None: no push quota."""
        return next((self.pushes[c] for c in order if c in self.pushes), None)


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for a name (cached: quota signals ask for it on every event)."""
    return ZoneInfo(name)


class ReportSettings(BaseModel):
    """pack.yaml `reports`: how much a user's report (S14) or a buyer's complaint (S5) weighs.

    A reporter's reputation is the mean of a Beta distribution over how moderators decided the cases their
    past reports and complaints led to: Beta(prior_upheld + upheld, prior_overturned + overturned). An account
    with no decided reports starts low (the prior's mean, 0.2 by default); an account younger than
    `full_weight_age_days` weighs in proportion to its age, but never less than `min_age_factor` of its
    reputation. A target is escalated when the summed weight of distinct reporters reaches a threshold.
    """

    model_config = ConfigDict(extra="forbid")
    prior_upheld: Annotated[float, Field(gt=0, le=1000)] = 1.0
    prior_overturned: Annotated[float, Field(gt=0, le=1000)] = 4.0
    full_weight_age_days: Annotated[float, Field(ge=0, le=3650)] = 30.0
    min_age_factor: Annotated[float, Field(ge=0, le=1)] = 0.1
    escalate_weight: Annotated[float, Field(gt=0, le=1_000_000)] = 3.0  # reports, summed over 7 days
    complaint_escalate_weight: Annotated[float, Field(gt=0, le=1_000_000)] = 0.5  # complaints, over 30 days


class ReviewSettings(BaseModel):
    """pack.yaml `review`: the review queue's service levels (hours from the event to a decision, by the
    case's severity 1-5) and how long a moderator's claim holds before another may take the case."""

    model_config = ConfigDict(extra="forbid")
    sla_hours: dict[Annotated[int, Field(ge=1, le=5)], Annotated[float, Field(gt=0, le=8760)]] = {
        1: 72, 2: 48, 3: 24, 4: 8, 5: 4}
    claim_minutes: Annotated[float, Field(gt=0, le=10080)] = 60


class PackSettings(BaseModel):
    """pack.yaml: the pack's name, strike ladder, default measure lengths, quotas and the quota time zone."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    description: str = ""
    strikes: Strikes = Strikes()
    default_days: dict[str, Annotated[float, Field(gt=0, le=3650)]] = {}
    # the platform's time zone: a "day" or "month" of a quota is a calendar one here, not a sliding window
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = DEFAULT_TIMEZONE
    quotas: Quotas = Quotas()
    reports: ReportSettings = ReportSettings()  # S14/S5: reporter reputation and escalation weights
    review: ReviewSettings = ReviewSettings()  # the review queue's service levels and claims

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            zone(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a folder such as 'Asia'
            raise ValueError(f"unknown time zone {name!r} (an IANA name such as Asia/Shanghai or UTC)") from exc
        return name

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)


def check_feature(feature: str | None) -> str | None:
    """Refuse a restriction on a feature the platform does not have (a typo would restrict nothing)."""
    if feature is not None and feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; known: {', '.join(sorted(FEATURES))}")
    return feature
