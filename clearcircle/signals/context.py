"""What a signal may read for one event: the event, account views, counters and registry look-ups.

Values are computed lazily and memoised: a rule that never reads `text.*` never pays for the text pass,
and the decision records exactly the values the rules used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from clearcircle.enforcement.state import AccountView
from clearcircle.events.schemas import Event
from clearcircle.signals.registry import SignalRegistry


class CounterReader(Protocol):
    """Sliding-window counts; the event being decided is already counted."""

    def count(self, key: str, name: str, since_ms: int, until_ms: int, distinct: bool = False) -> int: ...


class Lookups(Protocol):
    """Registry look-ups a signal may make (read-only)."""

    def account(self, account_id: str, at_ms: int) -> AccountView: ...

    def linked_accounts(self, account_id: str) -> list[tuple[str, str]]:
        """(kind, other account) pairs sharing a hashed identifier with this account."""
        ...

    def mutual_friends(self, a: str, b: str) -> int:
        """How many friends the two accounts share (S7: a stranger shares none)."""
        ...


@dataclass
class SignalContext:
    event: Event
    at_ms: int
    counters: CounterReader
    lookups: Lookups
    resources: Mapping[str, Any]  # pack resources, e.g. the lexicon
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> AccountView:
        if "_actor" not in self.memo:
            self.memo["_actor"] = self.lookups.account(self.event.actor, self.at_ms)
        return self.memo["_actor"]


class SignalValues(dict[str, Any]):
    """A lazy mapping name -> value over the registry, for one event: a value is computed on its first read
    (dict's __missing__, so repeated reads cost a plain dict look-up); the dict holds exactly what was read."""

    def __init__(self, registry: SignalRegistry, ctx: SignalContext) -> None:
        super().__init__()
        self._registry = registry
        self._fns = registry.fns_for(ctx.event.type)
        self.ctx = ctx

    @property
    def used(self) -> dict[str, Any]:
        return dict(self)

    def __missing__(self, name: str) -> Any:
        fn = self._fns[name]  # KeyError for a name not registered, as the registry gives
        value = None if fn is None else fn(self.ctx)
        self[name] = value
        return value
