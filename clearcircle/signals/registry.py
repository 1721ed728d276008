"""The one registry of signals: name, version, the event types each reads, its value type.

Signals compute values and never decide. A later detector plugs in by registering here (or through the
`clearcircle.signals` entry point group) without touching the engine; the policy compiler type-checks rule
conditions against what is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clearcircle.signals.context import SignalContext

SignalFn = Callable[["SignalContext"], Any]
_VALUE_TYPES = (int, float, bool, str, list)


class SignalRegistryError(ValueError):
    """A signal was registered twice, or with a bad name or type."""


@dataclass(frozen=True)
class SignalSpec:
    name: str
    version: int
    reads: frozenset[str]  # event types it applies to; empty means every type
    type: type | tuple[type, ...]
    description: str
    fn: SignalFn = field(compare=False)

    def applies_to(self, event_type: str) -> bool:
        return not self.reads or event_type in self.reads


class SignalRegistry:
    """Name -> SignalSpec; refuses duplicates so two detectors can never silently shadow each other."""

    def __init__(self) -> None:
        self._specs: dict[str, SignalSpec] = {}
        self._fns: dict[str, dict[str, SignalFn | None]] = {}  # fns_for's tables, dropped on register

    def register(self, spec: SignalSpec) -> SignalSpec:
        if spec.name in self._specs:
            raise SignalRegistryError(f"signal {spec.name!r} is already registered")
        if not spec.name or spec.name != spec.name.strip() or " " in spec.name:
            raise SignalRegistryError(f"bad signal name {spec.name!r}")
        types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
        if not all(t in _VALUE_TYPES for t in types):
            raise SignalRegistryError(f"signal {spec.name!r}: value type must be one of int/float/bool/str/list")
        self._specs[spec.name] = spec
        self._fns = {}
        return spec

    def signal(self, name: str, *, version: int, reads: Iterable[str] = (), type: type | tuple[type, ...],
               description: str) -> Callable[[SignalFn], SignalFn]:
        """Decorator form of `register`."""

        def wrap(fn: SignalFn) -> SignalFn:
            self.register_fn(name, fn, version=version, reads=reads, type=type, description=description)
            return fn

        return wrap

    def register_fn(self, name: str, fn: SignalFn, *, version: int, reads: Iterable[str] = (),
                    type: type | tuple[type, ...], description: str) -> SignalSpec:
        """Register a function built at import time (e.g. one per counter window)."""
        return self.register(SignalSpec(name, version, frozenset(reads), type, description, fn))

    def fns_for(self, event_type: str) -> dict[str, SignalFn | None]:
        """Name -> the function computing it for events of this type, or None where the signal does not apply
        (its value is then None). Built once per type: every signal read of every event looks up here."""
        table = self._fns.get(event_type)
        if table is None:
            table = {name: spec.fn if spec.applies_to(event_type) else None for name, spec in self._specs.items()}
            self._fns[event_type] = table
        return table

    def __getitem__(self, name: str) -> SignalSpec:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self):  # noqa: ANN204
        return iter(self._specs.values())

    def types(self) -> dict[str, type | tuple[type, ...]]:
        """Name -> value type, what the policy compiler checks conditions against."""
        return {name: spec.type for name, spec in self._specs.items()}


REGISTRY = SignalRegistry()


def load_builtin_signals() -> SignalRegistry:
    """Import the built-in signal modules (they register on import) and any plug-ins; returns REGISTRY."""
    import clearcircle.signals.friend_requests  # noqa: F401  (S7 friend-request spam)
    import clearcircle.signals.graph  # noqa: F401  (findings of the batch graph detectors, S2/S3/S4/S13)
    import clearcircle.signals.merchant  # noqa: F401  (merchant registry and food-sale signals, S10)
    import clearcircle.signals.reports  # noqa: F401  (S14/S5 reputation-weighted reports and complaints)
    from clearcircle.signals import account, counters, event_fields, identity, marketing, media, quota, text  # noqa: F401

    for ep in entry_points(group="clearcircle.signals"):
        ep.load()
    return REGISTRY
