"""Account state as stored, and the view of it at a moment in time.

Expiry is computed, never polled: a restriction carries its end time and the view at time T simply leaves
out what ended before T. Strikes decay the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field

DAY_MS = 86_400_000


class Measure(BaseModel):
    """One time-boxed measure (a restriction of a feature, a reach limit, a suspension, a ban)."""

    model_config = ConfigDict(extra="forbid")
    until_ms: int | None = None  # None: permanent
    since_ms: int
    source: str  # event id that caused it
    rule: str
    lifted_ms: int | None = None  # set by a lift: requests stamped before it cannot revive the measure

    def active(self, at_ms: int) -> bool:
        return self.since_ms <= at_ms and (self.until_ms is None or at_ms < self.until_ms)


class Strike(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    rule: str
    at_ms: int
    expires_ms: int


class AccountState(BaseModel):
    """Everything enforcement knows about one account; stored as one JSON document per account."""

    model_config = ConfigDict(extra="forbid")
    account_id: str
    account_type: str | None = None
    registered_ms: int | None = None
    first_seen_ms: int | None = None
    labels: dict[str, Measure] = Field(default_factory=dict)
    restrictions: dict[str, Measure] = Field(default_factory=dict)  # feature -> measure
    reach_limit: Measure | None = None
    suspension: Measure | None = None
    ban: Measure | None = None
    strikes: list[Strike] = Field(default_factory=list)
    reviews: dict[str, int] = Field(default_factory=dict)  # rule -> when it last opened a case
    friends: list[str] = Field(default_factory=list)

    def view(self, at_ms: int) -> AccountView:
        return AccountView.of(self, at_ms)


@dataclass(frozen=True, slots=True)
class AccountView:
    """The account as it stands at one instant: what signals read and what the API shows."""

    account_id: str
    at_ms: int
    known: bool
    account_type: str | None
    age_days: float | None
    labels: list[str]
    restrictions: dict[str, int | None]  # feature -> until (None: permanent)
    reach_limited: bool
    suspended: bool
    suspended_until_ms: int | None
    banned: bool
    strikes: int
    friends: int

    @classmethod
    def of(cls, state: AccountState, at_ms: int) -> AccountView:
        born = state.registered_ms if state.registered_ms is not None else state.first_seen_ms
        suspension = state.suspension if state.suspension and state.suspension.active(at_ms) else None
        return cls(
            account_id=state.account_id,
            at_ms=at_ms,
            known=state.registered_ms is not None,
            account_type=state.account_type,
            age_days=None if born is None else max(0.0, (at_ms - born) / DAY_MS),
            labels=sorted(k for k, m in state.labels.items() if m.active(at_ms)),
            restrictions={f: m.until_ms for f, m in sorted(state.restrictions.items()) if m.active(at_ms)},
            reach_limited=bool(state.reach_limit and state.reach_limit.active(at_ms)),
            suspended=suspension is not None,
            suspended_until_ms=suspension.until_ms if suspension else None,
            banned=bool(state.ban and state.ban.active(at_ms)),
            strikes=sum(1 for s in state.strikes if s.at_ms <= at_ms < s.expires_ms),
            friends=len(state.friends),
        )

    def model_dump(self) -> dict[str, object]:
        return asdict(self)
