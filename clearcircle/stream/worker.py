"""The worker loop: fetch a batch, decide it through the pipeline, send the decisions out, acknowledge.

Acknowledging comes last: only after the pipeline's transaction committed and the decisions reached every
sink. A crash anywhere before that leaves the entries pending, and they are decided again (by this worker
after a restart or by the one that takes the partition over): the store answers a redelivered event id with
its first decision (`duplicate: true`) and applies nothing twice.

One worker decides one batch at a time, and a partition (all events of the accounts hashing to it) is owned
by one worker at a time, so two events of one account are never decided concurrently.

`warm_up` (signals/warmup.py) loads, before a worker joins, what the first batch would otherwise load lazily,
so a worker that has joined (and may be handed partitions at once) is a ready one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from clearcircle.events.schemas import Event, EventError, parse_event_json
from clearcircle.pipeline import Outcome
from clearcircle.stream.base import Batch, DecisionSink, EventSource

log = logging.getLogger(__name__)

T = TypeVar("T")
Submit = Callable[[Sequence[Event]], list[Outcome]]


@dataclass
class WorkerStats:
    batches: int = 0
    decided: int = 0
    duplicates: int = 0
    dead: int = 0


class Worker:
    """Decides what `source` hands it until stopped; `submit` is `Pipeline.submit` (one committed unit)."""

    def __init__(self, source: EventSource, submit: Submit, sinks: Sequence[DecisionSink], batch: int = 500,
                 block_ms: int = 1000, retry_s: float = 1.0) -> None:
        self.source = source
        self.submit = submit
        self.sinks = list(sinks)
        self.batch = batch
        self.block_ms = block_ms
        self.retry_s = retry_s
        self.stats = WorkerStats()

    def run(self, stop: threading.Event) -> WorkerStats:
        """Loop until `stop` is set; the batch in hand is always finished (decided, sent, acked) first."""
        while not stop.is_set():
            done, batches = self._until_done(lambda: self.source.fetch(self.batch, self.block_ms), stop, "reading")
            if done and batches:
                self._handle(batches, stop)
        return self.stats

    def _handle(self, batches: list[Batch], stop: threading.Event) -> None:
        events: list[Event] = []
        for batch in batches:
            for entry in batch.entries:
                if entry.barrier_of is not None:  # holds its partition for an event elsewhere: acked with it
                    continue
                try:
                    events.append(parse_event_json(entry.data))
                except EventError as exc:  # published by something else than `publish`: set aside, go on
                    log.error("stream entry %s of partition %d is not an event: %s", entry.id, batch.partition,
                              exc)
                    self.source.dead_letter(batch, entry, str(exc))
                    self.stats.dead += 1
        done, outcomes = self._until_done(lambda: self.submit(events) if events else [], stop, "deciding")
        if not done:
            return  # stopped while the store was failing: left pending, decided again later
        pairs = [(o.decision, o.duplicate) for o in outcomes]
        for sink in self.sinks:
            if not self._until_done(lambda s=sink: s.send(pairs), stop, "sending decisions")[0]:
                return
        if not self._until_done(lambda: self.source.ack(batches), stop, "acknowledging")[0]:
            return
        self.stats.batches += 1
        self.stats.decided += len(outcomes)
        self.stats.duplicates += sum(o.duplicate for o in outcomes)

    def _until_done(self, step: Callable[[], T], stop: threading.Event, what: str) -> tuple[bool, T]:
        """Run a step, retrying while the store or the stream is unavailable (a batch is never skipped);
        (False, None) if told to stop first."""
        while True:
            try:
                return True, step()
            except Exception as exc:  # noqa: BLE001 - any failure of the store/stream: wait and retry
                log.warning("%s failed, retrying in %.1fs: %s: %s", what, self.retry_s, exc.__class__.__name__,
                            exc, exc_info=not isinstance(exc, OSError | RedisError | SQLAlchemyError))
                if stop.wait(self.retry_s):
                    return False, None  # type: ignore[return-value]
