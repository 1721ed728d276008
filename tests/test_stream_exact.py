"""`stream.exact.walk`: which buffered entries of an exact stream a worker may decide now.

The examples pin each rule; the property test runs random streams through several simulated workers that
read ahead by random amounts and commit what `walk` hands them, and checks that everything is consumed (no
deadlock) and that each event was decided with every partition it touches consumed exactly up to it, as a
single replay would have them.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from clearcircle.stream.base import Entry
from clearcircle.stream.exact import Progress, needed, walk

NONE = Progress({}, {})


def ev(seq: int, *waits: int) -> Entry:
    return Entry(f"{seq}-0", b"{}", seq, waits)


def bar(seq: int, of: int) -> Entry:
    return Entry(f"{seq}-0", b"", seq, (), of)


def seqs(taken: list[tuple[int, Entry]]) -> list[tuple[int, int]]:
    return [(p, e.seq) for p, e in taken]


def test_plain_events_of_two_partitions_come_in_stream_order_up_to_the_limit() -> None:
    buffers = {0: [ev(1), ev(4), ev(5)], 1: [ev(2), ev(3)]}
    assert seqs(walk(buffers, NONE, 10)) == [(0, 1), (1, 2), (1, 3), (0, 4), (0, 5)]
    assert seqs(walk(buffers, NONE, 3)) == [(0, 1), (1, 2), (1, 3)]


def test_an_event_waits_until_the_other_workers_partition_reached_it_and_the_rest_goes_on() -> None:
    buffers = {0: [ev(1), ev(5, 7), ev(6)], 1: [ev(2), ev(8)]}
    behind = Progress({}, {7: 3})  # partition 7's next unconsumed entry is seq 3: it has not reached 5
    assert seqs(walk(buffers, behind, 10)) == [(0, 1), (1, 2), (1, 8)]
    there = Progress({}, {7: 5})  # its next is the barrier at 5
    assert seqs(walk(buffers, there, 10)) == [(0, 1), (1, 2), (0, 5), (0, 6), (1, 8)]
    assert seqs(walk(buffers, Progress({}, {}), 10)) == seqs(walk(buffers, there, 10))  # 7 holds nothing now


def test_an_event_takes_its_barrier_in_a_partition_of_the_same_worker_along() -> None:
    buffers = {0: [ev(2, 1), ev(4)], 1: [ev(1), bar(2, 0), ev(3)]}
    assert seqs(walk(buffers, NONE, 10)) == [(1, 1), (0, 2), (1, 2), (1, 3), (0, 4)]
    # the barrier not read yet: the event waits (partition 1 may hold more before it)
    assert seqs(walk({0: [ev(2, 1), ev(4)], 1: [ev(1)]}, NONE, 10)) == [(1, 1)]
    # partition 1 stuck before the barrier: the event waits too
    stuck = {0: [ev(3, 1)], 1: [bar(2, 9), bar(3, 0)]}
    assert seqs(walk(stuck, Progress({9: 1}, {}), 10)) == []
    assert seqs(walk(stuck, Progress({9: 2}, {}), 10)) == [(1, 2), (0, 3), (1, 3)]


def test_a_barrier_holds_its_partition_until_its_event_is_committed() -> None:
    buffers = {0: [ev(1), bar(2, 5), ev(3)]}
    assert seqs(walk(buffers, Progress({5: 1}, {}), 10)) == [(0, 1)]
    assert seqs(walk(buffers, Progress({5: 2}, {}), 10)) == [(0, 1), (0, 2), (0, 3)]
    # its event is this worker's, and blocked: so is the barrier
    mine = {0: [ev(2, 1, 9)], 1: [bar(2, 0), ev(3)]}
    assert seqs(walk(mine, Progress({}, {9: 1}), 10)) == []
    assert needed(mine) == {9, 0}  # 9: another worker's, waited for; 0: whose event a barrier holds for


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), partitions=st.integers(1, 6), workers=st.integers(1, 4),
       events=st.integers(1, 80))
def test_random_streams_are_consumed_whole_each_event_at_its_place(seed: int, partitions: int, workers: int,
                                                                    events: int) -> None:
    rng = random.Random(seed)
    streams: dict[int, list[Entry]] = {p: [] for p in range(partitions)}
    touches: dict[int, set[int]] = {}
    for seq in range(1, events + 1):
        home = rng.randrange(partitions)
        waits = tuple(sorted({rng.randrange(partitions) for _ in range(rng.choice((0, 0, 1, 2)))} - {home}))
        streams[home].append(ev(seq, *waits))
        for q in waits:
            streams[q].append(bar(seq, home))
        touches[seq] = {home, *waits}
    owner = {p: rng.randrange(workers) for p in range(partitions)}
    consumed = {p: 0 for p in range(partitions)}
    decided: list[int] = []

    def done(p: int) -> int:
        return streams[p][consumed[p] - 1].seq if consumed[p] else 0

    def step(w: int, ahead: int, limit: int) -> list[tuple[int, Entry]]:
        mine = [p for p in streams if owner[p] == w]
        buffers = {p: streams[p][consumed[p]:consumed[p] + ahead] for p in mine}
        others = [p for p in streams if owner[p] != w]
        progress = Progress({p: done(p) for p in streams if done(p)},
                            {p: streams[p][consumed[p]].seq for p in others if consumed[p] < len(streams[p])})
        return walk(buffers, progress, limit)

    idle_rounds = 0
    while any(consumed[p] < len(streams[p]) for p in streams):
        if idle_rounds > 4 * workers:  # unlucky draws, or stuck for good: every worker reading everything
            taken = next((t for w in range(workers) if (t := step(w, 10**6, 10**6))), [])
            assert taken, f"deadlock: consumed {consumed} of {[len(s) for s in streams.values()]}"
        else:
            taken = step(rng.randrange(workers), rng.choice((1, 3, 50)), rng.choice((1, 5, 1000)))
        idle_rounds = 0 if taken else idle_rounds + 1
        for p, entry in taken:  # commit in the order handed out
            assert streams[p][consumed[p]] is entry  # a prefix of each partition, in order
            if entry.barrier_of is None:
                for q in touches[entry.seq]:  # every partition it touches is consumed exactly up to it
                    before = [e.seq for e in streams[q][consumed[q]:] if e.seq < entry.seq]
                    assert before == [], f"event {entry.seq} decided before {before} of partition {q}"
                decided.append(entry.seq)
            else:
                assert entry.seq in decided, f"barrier {entry.seq} passed before its event"
            consumed[p] += 1
    assert sorted(decided) == list(range(1, events + 1))
