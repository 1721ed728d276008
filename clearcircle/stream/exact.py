"""Exact order across partitions: which buffered entries a worker may decide now.

On an exact stream every entry carries its place in the whole stream (`seq`, given at publication). An
event that reads or writes what another partition also touches (`base.shared_keys`: a report's reporter,
the person a friend request asks, a shared item…) is published to its own partition with the list of those
partitions (`waits`), and a *barrier* with the same seq is put in each of them. Then:

- the event is decided only when each partition it waits for has consumed everything before that seq (its
  next unconsumed entry is the barrier), so what it reads there is as a single replay would have it;
- a barrier is passed only once its event is decided, so those partitions do not run ahead of it.

Deadlock is impossible: the entry with the smallest unconsumed seq anywhere is always ready (everything
before it is consumed, and nothing it waits for is further on). A worker commits what it took before it
waits, so the others see its progress.

`walk` is the pure part: given what this worker holds (its partitions' buffered entries, oldest first) and
what the others have committed (`Progress`), the entries it may decide now, in stream order. The Redis
source (redis_streams.py) keeps the buffers and the committed positions.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clearcircle.stream.base import Entry


@dataclass(frozen=True)
class Progress:
    """Other workers' committed progress, read once per walk.

    `done[p]`: the highest seq partition p has consumed and committed (absent: nothing yet), for this
    worker's partitions too; `next[p]`: the seq of p's first unconsumed entry (absent: p has none now), for
    the partitions of other workers."""

    done: Mapping[int, int]
    next: Mapping[int, int]


def seq_of(entry_id: str | bytes) -> int:
    """An exact stream's entry ids are `SEQ-0`."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def needed(buffers: Mapping[int, Sequence[Entry]]) -> set[int]:
    """The partitions whose committed progress a walk over `buffers` may read: those of other workers that
    buffered events wait for, and those whose events buffered barriers hold for."""
    waits: set[int] = set()
    holds: set[int] = set()
    for entries in buffers.values():
        for e in entries:
            waits.update(e.waits)
            if e.barrier_of is not None:
                holds.add(e.barrier_of)
    return (waits - set(buffers)) | holds


def walk(buffers: Mapping[int, Sequence[Entry]], progress: Progress, limit: int) -> list[tuple[int, Entry]]:
    """Up to `limit` (partition, entry) pairs this worker may consume now, in seq order: a prefix of each
    buffer. `buffers` has every partition this worker owns (empty: nothing read yet). A partition stops at its
    first entry that is not ready; the others go on."""
    taken: list[tuple[int, Entry]] = []
    at = {p: 0 for p in buffers}  # index of each buffer's next entry
    blocked: set[int] = set()
    heap: list[tuple[int, int, int]] = []  # (seq, 0 event / 1 barrier, partition)

    def push(p: int) -> None:
        if at[p] < len(buffers[p]):
            e = buffers[p][at[p]]
            heapq.heappush(heap, (e.seq, 0 if e.barrier_of is None else 1, p))

    for p in buffers:
        push(p)
    while heap and len(taken) < limit:
        seq, _kind, p = heapq.heappop(heap)
        entry = buffers[p][at[p]]
        if entry.barrier_of is None:
            if not all(_reached(q, seq, buffers, at, blocked, progress) for q in entry.waits):
                blocked.add(p)
                continue
            taken.append((p, entry))
            at[p] += 1
            push(p)
            for q in entry.waits:
                if q in buffers:  # its barrier here goes with it, in the same commit
                    taken.append((q, buffers[q][at[q]]))
                    at[q] += 1
                    _drop(heap, q)
                    push(q)
        elif progress.done.get(entry.barrier_of, 0) >= seq:
            taken.append((p, entry))  # its event is decided and committed (here or elsewhere)
            at[p] += 1
            push(p)
        else:  # its event is not decided yet (one of ours at `seq` would have been popped first, and taken it)
            blocked.add(p)
    return taken


def _reached(q: int, seq: int, buffers: Mapping[int, Sequence[Entry]], at: Mapping[int, int], blocked: set[int],
             progress: Progress) -> bool:
    """Whether partition q has consumed everything before `seq` (its next entry is the barrier at seq)."""
    if q in buffers:
        if q in blocked or at[q] >= len(buffers[q]):
            return False  # stuck earlier, or the barrier not read yet
        e = buffers[q][at[q]]
        return e.seq == seq and e.barrier_of is not None
    following = progress.next.get(q)
    return following is None or following >= seq


def _drop(heap: list[tuple[int, int, int]], q: int) -> None:
    """Remove partition q's head from the heap (it was consumed with its event)."""
    heap[:] = [h for h in heap if h[2] != q]
    heapq.heapify(heap)
