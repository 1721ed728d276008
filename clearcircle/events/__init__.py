"""Event schemas: the wire contract with the platform backend (see shared EVENTS.md).

This package imports nothing else of ClearCircle: everything downstream depends on it, never the reverse.
"""

from clearcircle.events.identifiers import hash_identifiers
from clearcircle.events.schemas import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Event,
    EventError,
    parse_event,
    parse_event_json,
)

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Event",
    "EventError",
    "hash_identifiers",
    "parse_event",
    "parse_event_json",
]
