"""Account state as stored, and the view of it at a moment in time.

Expiry is computed, never polled: a restriction carries its end time and the view at time T simply leaves
out what ended before T. Strikes decay the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

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


class ReportMark(BaseModel):
    """One account's standing report (or buyer complaint) of this account (S14, S5): the latest one, weighed by
    the reporter's reputation when it was filed. Keyed by the reporter, so a reporter counts once."""

    model_config = ConfigDict(extra="forbid")
    at_ms: int
    weight: float
    reason: str
    event_id: str
    judged: int | None = None  # the case whose decision counted it in the reporter's reputation (once)


class ReporterRecord(BaseModel):
    """How this account's past reports and complaints were decided by moderators (its reputation's evidence)."""

    model_config = ConfigDict(extra="forbid")
    upheld: int = 0
    overturned: int = 0


class LedgerEntry(BaseModel):
    """One enforcement request applied to this account, kept so an overturned action can be reversed exactly:
    the account's measures are rebuilt from its requests without the overturned one (enforce.reverse).
    Frozen: an entry is never changed once made, so its JSON can be kept (AccountState.stored_json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: str
    rule: str
    source: str
    at_ms: int
    days: float | None = None
    feature: str | None = None
    label: str | None = None
    strike: bool = False
    strike_days: float = 90.0


class AccountState(BaseModel):
    """Everything enforcement knows about one account; stored as one JSON document per account."""

    model_config = ConfigDict(extra="forbid")
    account_id: str
    account_type: str | None = None
    # personal / subscription / service / merchant / verified_brand; None: the account_type decides
    account_class: str | None = None
    industry: str | None = None  # for industry tiers of quotas; set by the merchant registry
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
    # people in the loop (issue 6): reports and complaints about this account, by reporter; how its own reports
    # were decided; the enforcement requests it received (and what they had built before the oldest kept one)
    reports: dict[str, ReportMark] = Field(default_factory=dict)
    complaints: dict[str, ReportMark] = Field(default_factory=dict)
    reporting: ReporterRecord | None = None
    ledger: list[LedgerEntry] = Field(default_factory=list)
    ledger_base: dict[str, Any] | None = None

    def view(self, at_ms: int) -> AccountView:
        return AccountView(self, at_ms)

    def stored_json(self) -> str:
        """The state as stored: the model's JSON with the ledger last, each ledger entry dumped once.

        A busy account's ledger (up to enforce.LEDGER_MAX requests) is most of its state, and the state is
        written back after every unit that changes it: dumped whole, 200 entries cost ~280 µs a write. The
        ledger only grows at its end and folds at its start, so the entries of the last dump are found again
        as one run, compared in C (by identity, else by value: entries are frozen, so equal entries have the
        same JSON), and only new entries are dumped. What is kept lives in the instance's __dict__ beside the
        fields, as a cached_property's would: pydantic's equality, dumps and copies look at fields only."""
        ledger = self.ledger
        old, parts = self.__dict__.get(_KEPT, _NOTHING_KEPT)
        start = _run_start(old, ledger[0]) if ledger else None
        if start is None:
            kept = []
        else:
            common = min(len(ledger), len(old) - start)
            kept = parts[start : start + common] if ledger[:common] == old[start : start + common] else []
        kept += [entry.model_dump_json() for entry in ledger[len(kept) :]]
        self.__dict__[_KEPT] = (list(ledger), kept)
        head = self.model_dump_json(exclude=_LEDGER)
        return f'{head[:-1]},"ledger":[{",".join(kept)}]}}'


def _run_start(entries: list[LedgerEntry], first: LedgerEntry) -> int | None:
    """Where `first` is among the entries last dumped (the ledger's oldest entries fold away), if it is. The
    list's own search checks identity before equality, so the usual case (the same first entry) costs one test."""
    try:
        return entries.index(first)
    except ValueError:
        return None


_LEDGER = frozenset({"ledger"})
_KEPT = "_ledger_json"  # (the ledger's entries, their JSON) as last stored
_NOTHING_KEPT: tuple[list[LedgerEntry], list[str]] = ([], [])

_T = TypeVar("_T")


class _once(Generic[_T]):  # noqa: N801  (used like functools.cached_property)
    """functools.cached_property without its lock: on Python 3.11 every first read takes one RLock shared by
    all instances, and a view is read by one thread, for one event. The value lands in the instance's
    __dict__, so later reads are plain attribute reads."""

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> _T:
        if instance is None:
            return self  # type: ignore[return-value]
        value = instance.__dict__[self.name] = self.fn(instance)
        return value


class AccountView:
    """The account as it stands at one instant: what signals read and what the API shows.

    Each fact is computed on first read: most events need two or three of them, never all.
    """

    FIELDS = ("account_id", "at_ms", "known", "account_type", "account_class", "industry", "age_days", "labels",
              "restrictions",
              "reach_limited", "suspended", "suspended_until_ms", "banned", "strikes", "friends")

    def __init__(self, state: AccountState, at_ms: int) -> None:
        self._state = state
        self.at_ms = at_ms
        self.account_id = state.account_id
        self.account_type = state.account_type
        self.known = state.registered_ms is not None
        # the class set on the account (a verified merchant or brand), else its registered type
        self.account_class = state.account_class or state.account_type or "unknown"
        self.industry = state.industry

    @classmethod
    def of(cls, state: AccountState, at_ms: int) -> AccountView:
        return cls(state, at_ms)

    @_once
    def age_days(self) -> float | None:
        born = self._state.registered_ms if self._state.registered_ms is not None else self._state.first_seen_ms
        return None if born is None else max(0.0, (self.at_ms - born) / DAY_MS)

    @_once
    def labels(self) -> list[str]:
        if not self._state.labels:
            return []
        return sorted(k for k, m in self._state.labels.items() if m.active(self.at_ms))

    @_once
    def restrictions(self) -> dict[str, int | None]:
        """feature -> end of the restriction (None: permanent)."""
        if not self._state.restrictions:
            return {}
        return {f: m.until_ms for f, m in sorted(self._state.restrictions.items()) if m.active(self.at_ms)}

    def restricted_from(self, features: Iterable[str]) -> bool:
        """Whether any of `features` is among `restrictions`, without building that (sorted) mapping: asked
        of every event that uses a feature, while most accounts have few restrictions and none in force."""
        held = self._state.restrictions
        if not held:
            return False
        return any((m := held.get(f)) is not None and m.active(self.at_ms) for f in features)

    @_once
    def reach_limited(self) -> bool:
        return bool(self._state.reach_limit and self._state.reach_limit.active(self.at_ms))

    @_once
    def _suspension(self) -> Measure | None:
        s = self._state.suspension
        return s if s is not None and s.active(self.at_ms) else None

    @property
    def suspended(self) -> bool:
        return self._suspension is not None

    @property
    def suspended_until_ms(self) -> int | None:
        return self._suspension.until_ms if self._suspension is not None else None

    @_once
    def banned(self) -> bool:
        return bool(self._state.ban and self._state.ban.active(self.at_ms))

    @_once
    def strikes(self) -> int:
        return sum(1 for s in self._state.strikes if s.at_ms <= self.at_ms < s.expires_ms)

    @property
    def friends(self) -> int:
        return len(self._state.friends)

    def reported_within(self, kind: str, since_ms: int) -> list[tuple[str, float]]:
        """(reporter, weight) of each distinct account whose latest report (kind "reports") or complaint
        ("complaints") of this account was filed in (since_ms, at_ms]."""
        marks: dict[str, ReportMark] = getattr(self._state, kind)
        return [(who, m.weight) for who, m in sorted(marks.items()) if since_ms < m.at_ms <= self.at_ms]

    @property
    def reporting(self) -> ReporterRecord | None:
        return self._state.reporting

    def is_friend(self, other: str) -> bool:
        return other in self._state.friends

    def model_dump(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.FIELDS}
