"""A stream's state as its workers see it, read from Redis without changing anything.

For `clearcircle stream-status`: the first thing an operator looks at when decisions lag. Which workers are
alive and how long their heartbeat has left, which worker holds each partition's lease and which one the plan
(assign.py) wants there, how many events each partition still has to decide, how many are pending (read
and not acknowledged: a worker that died holding them, or one deciding them now), and what is kept in Redis.
`problems` names what needs a person: a partition with a backlog and no live owner, a lease held by a
worker that is not alive any more, entries set aside as not events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from clearcircle.stream.base import StreamError
from clearcircle.stream.redis_streams import GROUP, StreamAddress, backlog_of, ordering_of, read_plan, server_ms


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    owner: str | None  # the lease holder
    lease_left_ms: int | None  # until the lease runs out unless renewed
    planned: str | None  # the owner the plan in force wants (None: no plan for the live workers)
    backlog: int  # events not decided yet: not delivered, or delivered and pending
    pending: int  # delivered to a worker and not acknowledged
    kept: int  # entries held in Redis (the backlog, the pending ones, at most a node of decided ones)


@dataclass(frozen=True)
class WorkerStatus:
    id: str
    heartbeat_left_ms: int  # until the others consider it dead
    partitions: list[int]  # the leases it holds
    backlog: int  # of those partitions


@dataclass(frozen=True)
class StreamStatus:
    name: str
    ordering: str
    partitions: list[PartitionStatus]
    workers: list[WorkerStatus]
    plan_by: str | None  # the worker that made the plan in force; None: workers share by i % n
    decisions: int  # entries in NAME:decisions
    dead: int  # entries set aside as not events (NAME:dead)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def backlog(self) -> int:
        return sum(p.backlog for p in self.partitions)


def read_status(client: redis.Redis, address: StreamAddress) -> StreamStatus:
    """Everything above in a few round trips; StreamError if there is no such stream on this server."""
    count = client.get(address.count_key)
    if count is None:
        raise StreamError(f"no stream named {address.name!r} on this Redis (nothing has published to it or "
                          "joined it yet)")
    n = int(count)
    now = server_ms(client)
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(address.workers_key, now, "+inf", withscores=True)
    pipe.get(address.plan_key)
    for i in range(n):
        pipe.get(address.lease_key(i))
        pipe.pttl(address.lease_key(i))
        pipe.xlen(address.partition_key(i))
        pipe.xpending(address.partition_key(i), GROUP)
    pipe.xlen(address.decisions_key)
    pipe.xlen(address.dead_key)
    reply = pipe.execute(raise_on_error=False)
    live = {w.decode(): int(score) - now for w, score in reply[0]}
    plan = read_plan(reply[1], n)
    if plan is None or not plan.in_force(sorted(live), n):  # workers then share by i % n
        plan = None
    planned = plan.owners if plan else {}
    backlog = backlog_of(client, address, n)
    parts = []
    for i in range(n):
        owner, ttl, kept, pending = reply[2 + 4 * i: 6 + 4 * i]
        parts.append(PartitionStatus(
            i, owner.decode() if owner else None, ttl if owner and isinstance(ttl, int) and ttl >= 0 else None,
            planned.get(i), backlog.get(i, 0), pending["pending"] if isinstance(pending, dict) else 0,
            kept if isinstance(kept, int) else 0))
    workers = [WorkerStatus(w, left, [p.partition for p in parts if p.owner == w],
                            sum(p.backlog for p in parts if p.owner == w)) for w, left in sorted(live.items())]
    decisions, dead = (v if isinstance(v, int) else 0 for v in reply[-2:])
    status = StreamStatus(address.name, ordering_of(client, address), parts, workers, plan.made_by if plan else None,
                          decisions, dead)
    status.problems.extend(_problems(status, set(live)))
    return status


def _problems(status: StreamStatus, live: set[str]) -> list[str]:
    out = []
    for p in status.partitions:
        if p.owner is not None and p.owner not in live:
            out.append(f"partition {p.partition}: its lease is held by {p.owner}, which is not alive (the lease "
                       f"runs out in {p.lease_left_ms or 0} ms, then another worker takes it)")
        elif p.owner is None and p.backlog:
            out.append(f"partition {p.partition}: {p.backlog} event(s) to decide and no worker owns it"
                       + ("" if live else " (no worker is running)"))
    if status.dead:
        out.append(f"{status.dead} entr{'y' if status.dead == 1 else 'ies'} set aside as not events in "
                   f"{status.name}:dead")
    return out
