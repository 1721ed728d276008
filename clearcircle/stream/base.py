"""The stream behind one small interface, so a Kafka source can be added without touching the engine.

A source hands a worker batches of consecutive entries of one partition (a partition holds the events of
the accounts whose id hashes to it, in publication order) and is told to acknowledge them only after their
decisions are committed: delivery is at least once, and the store's idempotency by event id makes it
effectively once. A sink takes the decisions of a committed batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from clearcircle.events.schemas import Event


class StreamError(RuntimeError):
    """The stream cannot be used as asked (bad URL, unreachable server, a partition count that disagrees)."""


def actor_hash(actor: str) -> int:
    """A 64-bit hash of an account id, the same in every process, machine and Python version (Python's own
    hash() is salted per process, so it would scatter one account over several partitions)."""
    return int.from_bytes(hashlib.blake2b(actor.encode(), digest_size=8).digest(), "big")


def partition_of(account: str, partitions: int) -> int:
    """The partition holding the events about an account (see `partition_account`)."""
    return actor_hash(account) % partitions


def partition_account(event: Event) -> str:
    """The account an event is about, whose partition it goes to: the one place that routes events.

    Mostly the actor. Three event types are decided on another account's state, which they read and write:
    - `moderator_action`: the target (the actor is the moderator; the measure lands on the target and the
      target's next events must see it, e.g. `banned-account-activity`);
    - `report`: the target (the mark is kept on the target, `report-threshold` counts its received reports,
      `report-escalation` sums their weights);
    - `buyer_complaint`: the seller (the same for `seller-complaints`).
    Routed by the actor, these read the target's state while the target's earlier events wait in another
    partition. Routed by the target, the only state of the actor they read is a report's weight (the
    reporter's reputation, age and ban/suspension, review/reputation.py `report_weight`): a reporter's own
    registration or ban still waiting in its partition can change that weight (docs/stream.md, Ordering).
    """
    body = event.body
    if event.type in ("moderator_action", "report"):
        return body.target
    if event.type == "buyer_complaint":
        return body.seller
    return event.actor


def shared_keys(event: Event) -> tuple[str, ...]:
    """What else than its own account (`partition_account`) deciding the event reads or writes, as keys
    whose partition holds everything else that touches them: an exact stream (docs/stream.md, Exact order)
    decides the event only once each of those partitions has decided all that comes before it in the
    stream, and holds them until it is decided.

    - `report`, `buyer_complaint`: the reporter (a report's weight reads its state);
    - `moderator_action`: the moderator (its first-seen time is kept);
    - `friend_request`: the person asked (the stranger test reads their friends);
    - `friend_request_answered`: the requester (the friend cap reads, befriending writes, their friends);
    - `share`: the shared item (`induced-share-burst` counts everyone's shares of it).

    Not covered: a photo's posters (its key is known only once the image is decoded) and accounts linked by
    a device or phone (ban evasion reads whether they are banned); those reads stay in partition order."""
    body = event.body
    kind = event.type
    if kind in ("report", "buyer_complaint", "moderator_action"):
        return (event.actor,)
    if kind in ("friend_request", "friend_request_answered"):
        return (body.target,)
    if kind == "share":
        return ("item:" + body.item,)
    return ()


def route(event: Event, partitions: int) -> tuple[int, tuple[int, ...]]:
    """(the partition the event goes to, the other partitions it must wait for: those of `shared_keys`)."""
    return route_hashes(actor_hash(partition_account(event)), [actor_hash(k) for k in shared_keys(event)],
                        partitions)


def route_hashes(home_hash: int, shared_hashes: Iterable[int], partitions: int) -> tuple[int, tuple[int, ...]]:
    """`route` from the hashes (`actor_hash`) of the event's account and of its shared keys: for a publisher
    that hashes while it checks a file, before it knows the stream's partition count."""
    home = home_hash % partitions
    return home, tuple(sorted({h % partitions for h in shared_hashes} - {home}))


@dataclass(frozen=True)
class Entry:
    """One stream entry: its position in the partition and the event as published (one JSON text).

    On an exact stream an entry also knows its place in the whole stream (`seq`) and either the other
    partitions its event waits for (`waits`) or, for a *barrier* (no event), the partition whose event at the
    same `seq` it holds this partition for (`barrier_of`)."""

    id: str
    data: bytes
    seq: int = 0
    waits: tuple[int, ...] = ()
    barrier_of: int | None = None


@dataclass(frozen=True)
class Batch:
    """Consecutive entries of one partition, oldest first."""

    partition: int
    entries: list[Entry]


class EventSource(Protocol):
    """Where a worker's events come from. Each partition is read by one worker at a time, in order."""

    def fetch(self, max_events: int, block_ms: int) -> list[Batch]:
        """Up to `max_events` entries in batches of one partition each (pending entries of a partition before
        new ones); an empty list when nothing arrived within `block_ms`."""
        ...

    def ack(self, batches: Sequence[Batch]) -> None:
        """Mark the batches done; called only after their decisions committed."""
        ...

    def dead_letter(self, batch: Batch, entry: Entry, reason: str) -> None:
        """Set aside an entry that can never be decided (not an event), so it does not block its partition."""
        ...

    def close(self) -> None:
        """Give up every partition (another worker takes them at once) and leave."""
        ...


class DecisionSink(Protocol):
    """Where decisions go once their batch committed (an output stream; a webhook reads from that)."""

    def send(self, decisions: Sequence[tuple[dict[str, Any], bool]]) -> None:
        """(decision as the pipeline returned it, duplicate) pairs, in decision order."""
        ...
