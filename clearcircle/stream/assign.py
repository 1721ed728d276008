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
    the others, heaviest first, to the lightest worker; then, while it helps by `unit`, move a partition from
    the heaviest worker to the lightest, or swap one of each, whichever evens the two out best (a swap
    is needed when every partition outweighs the gap: two workers with eight partitions each). Deterministic:
    every worker computing it from the same figures gets the same plan."""
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
    for _step in range(partitions * len(live)):  # each change strictly lowers the sum of squared loads
        heavy = max(live, key=lambda w: (load[w], -rank[w]))
        light = min(live, key=lambda w: (load[w], rank[w]))
        change = _best_change(plan, weight, heavy, light, load[heavy] - load[light])
        if change is None:
            break
        shift, give, take = change
        if load[heavy] - max(load[heavy] - shift, load[light] + shift) < unit:
            break
        plan[give] = light
        if take is not None:
            plan[take] = heavy
        load[heavy] -= shift
        load[light] += shift
    return dict(sorted(plan.items()))


def _best_change(plan: Plan, weight: Mapping[int, int], heavy: str, light: str,
                 gap: int) -> tuple[int, int, int | None] | None:
    """(load shifted, partition heavy gives, partition light gives back or None) that brings the two
    nearest to even, among the changes that shift less than the gap (so the pair's maximum falls); a move
    before a swap when both do as well."""
    mine = sorted(i for i, w in plan.items() if w == heavy)
    theirs = sorted(i for i, w in plan.items() if w == light)
    best: tuple[tuple[int, int, int, int], tuple[int, int, int | None]] | None = None
    for give in mine:
        for take in [None, *theirs]:
            shift = weight[give] - (weight[take] if take is not None else 0)
            if 0 < shift < gap:
                key = (abs(gap - 2 * shift), take is not None, give, -1 if take is None else take)
                if best is None or key < best[0]:
                    best = (key, (shift, give, take))
    return None if best is None else best[1]
