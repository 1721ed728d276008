"""Which live worker owns which partition: an even share by count, moved towards an even share of the work.

Pure functions; `redis_streams.RedisSource` applies them. One worker (the first of the sorted live workers)
computes the plan from every partition's backlog (entries not yet decided) and publishes it; the others
follow it while they see the same live workers, and fall back to `even_share` otherwise. The plan only
says who should own what: a partition still changes hands only through its lease, between batches, so a
stale or disputed plan costs a short wait, never two owners.

Why by backlog: the partitions of hot accounts hold far more events than the others (on the generated mix,
16 partitions split `i % 2` gave one of two workers 52.9% of the events), and a worker whose partitions are
drained sits idle while the other still has a queue.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

Plan = dict[int, str]  # partition -> worker id


def even_share(workers: Sequence[str], partitions: int) -> Plan:
    """Worker k of the n sorted workers owns the partitions i with i % n == k: the share when nothing is
    known about the load (no plan yet, or the workers disagree on who is alive)."""
    live = sorted(workers)
    return {i: live[i % len(live)] for i in range(partitions)} if live else {}


def balance(workers: Sequence[str], backlog: Mapping[int, int], previous: Mapping[int, str], partitions: int,
            unit: int) -> Plan:
    """A plan that evens out each worker's share of the backlog, moving as few partitions as it can.

    Each partition weighs its backlog plus `unit` (a batch's worth of events), so that with no backlog the
    share is even by count, and a change is worth making only if it lowers the busier worker's load by at
    least `unit` (it costs a hand-over). Start from `previous` for the partitions whose owner is alive; give
    the others, heaviest first, to the lightest worker; then, from the heaviest worker to the lightest, move
    the partition that evens the two out best if that helps by `unit`, else swap the pair that does (needed
    when every partition outweighs the gap: two workers with eight partitions each), until neither helps.
    Deterministic: every worker computing it from the same figures gets the same plan."""
    live = sorted(set(workers))
    if not live:
        return {}
    rank = {w: k for k, w in enumerate(live)}
    weight = {i: max(0, int(backlog.get(i, 0))) + unit for i in range(partitions)}
    plan: Plan = {i: w for i, w in previous.items() if 0 <= i < partitions and w in rank}
    load = dict.fromkeys(live, 0)
    for i, w in plan.items():
        load[w] += weight[i]
    for i in sorted(set(range(partitions)) - set(plan), key=lambda i: (-weight[i], i)):
        w = min(live, key=lambda w: (load[w], rank[w]))
        plan[i] = w
        load[w] += weight[i]
    held = {w: sorted((weight[i], i) for i, o in plan.items() if o == w) for w in live}
    for _step in range(partitions * len(live)):  # each change strictly lowers the sum of squared loads
        heavy = max(live, key=lambda w: (load[w], -rank[w]))
        light = min(live, key=lambda w: (load[w], rank[w]))
        gap = load[heavy] - load[light]
        change = _move(held[heavy], gap, unit) or _swap(held[heavy], held[light], gap, unit)
        if change is None:
            break
        give, take = change
        _hand(held, plan, give, heavy, light)
        shift = give[0]
        if take is not None:
            _hand(held, plan, take, light, heavy)
            shift -= take[0]
        load[heavy] -= shift
        load[light] += shift
    return dict(sorted(plan.items()))


Held = list[tuple[int, int]]  # a worker's partitions as (weight, partition), sorted


def _gain(shift: int, gap: int) -> int:
    """How much lower the busier of two workers `gap` apart ends up when `shift` moves to the other."""
    return min(shift, gap - shift) if 0 < shift < gap else 0


def _move(mine: Held, gap: int, unit: int) -> tuple[tuple[int, int], None] | None:
    """The partition whose move evens the pair out best (its weight nearest half the gap), if that helps by
    `unit`."""
    k = bisect.bisect_left(mine, (gap // 2, -1))
    best = max(mine[max(0, k - 1): k + 1], key=lambda wi: (_gain(wi[0], gap), -wi[1]), default=None)
    return (best, None) if best is not None and _gain(best[0], gap) >= unit else None


def _swap(mine: Held, theirs: Held, gap: int, unit: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The exchange of one partition each that evens the pair out best, if that helps by `unit` (needed when
    every partition outweighs the gap: two workers with eight partitions each). For each of the busier
    worker's partitions only the other's two nearest to the ideal weight are looked at: O(n log n)."""
    best: tuple[tuple[int, int, int], tuple[tuple[int, int], tuple[int, int]]] | None = None
    for give in mine:
        k = bisect.bisect_left(theirs, (give[0] - gap // 2, -1))
        for take in theirs[max(0, k - 1): k + 1]:
            key = (-_gain(give[0] - take[0], gap), give[1], take[1])
            if best is None or key < best[0]:
                best = (key, (give, take))
    return best[1] if best is not None and -best[0][0] >= unit else None


def _hand(held: dict[str, Held], plan: Plan, part: tuple[int, int], old: str, new: str) -> None:
    held[old].pop(bisect.bisect_left(held[old], part))
    bisect.insort(held[new], part)
    plan[part[1]] = new
