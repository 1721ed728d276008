"""Single events that arrive while the pipeline is busy are decided together, in one submit.

Why: a submit is one transaction (prefetches, campaign and merchant refresh, audit head, commit), which
costs several milliseconds whether it holds one event or a hundred, and the pipeline runs one submit at a
time. Under load, deciding each request alone spends the CPU on that fixed cost; grouping the requests that
queued up during the previous submit spreads it, in arrival order, with nothing added when the server is
idle (a lone request is submitted at once). If a grouped submit fails, its events are retried one by one, so
an error reaches only the request that caused it.

A request may leave its API key to be checked with its group (`admit`): the keys of a group are looked up
together, in one query on the coalescer's thread just before the submit, instead of one query per request
on the event loop (each of those gave the GIL to the deciding thread and waited to get it back: +18%
single-event throughput, docs/hardening.md, Load). A refused request's event is never submitted.

The submits run on one thread of the coalescer's own (the pipeline decides one submit at a time anyway),
which takes the next group as soon as it has answered the last: requests queue for it under a lock, and it
hands each group's outcomes back to the event loop in one callback. It never waits for the event loop to
give it work (with the loop handing each group over, the thread sat idle between groups while the loop
parsed requests and wrote answers: docs/hardening.md, Load).

A caller with a pool of connections (the platform's backend) asks again as soon as it is answered. Taking
whatever has queued the moment a group is answered splits such callers into two cohorts that take turns
(with 8 connections: groups of 2 and 6, each paying a submit's fixed cost). So after answering a group the
thread waits, briefly, for the callers it just answered to come back: until as many requests are queued as
were queued then plus the group it answered, or at most `linger` seconds (and never longer than that group
took to decide) after the answer. A request arriving once that has passed, as at idle, is taken at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from clearcircle.obs.logs import EVENT_ID


class Refused(Exception):
    """A request refused by `admit` (its key unknown, revoked or of a role not admitted); `error` says why."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


_Waiting = tuple[Any, str | None, asyncio.Future[Any]]


class Coalescer:
    """`await decide(event)` -> that event's pipeline Outcome; at most `max_batch` events per submit.

    `decide(event, key)` has the key checked with the group: `admit(keys)` returns the refusal of each key
    refused (absent: admitted), and `decide` raises `Refused` with it."""

    IDLE_SECONDS = 30.0

    def __init__(self, submit: Callable[[Sequence[Any]], list[Any]], max_batch: int = 256,
                 admit: Callable[[set[str]], dict[str, Exception]] | None = None, linger: float = 0.003) -> None:
        self.submit = submit
        self.admit = admit
        self.max_batch = max_batch
        self.linger = linger
        self._queue: deque[_Waiting] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        # after the last group was answered: how many requests to wait for, and until when (monotonic)
        self._expect, self._until = 0, 0.0

    async def decide(self, event: Any, key: str | None = None) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._ready:
            self._queue.append((event, key, future))
            if self._thread is None:
                self._start()
            self._ready.notify()
        return await future

    def _run(self) -> None:
        """The coalescer's thread: each group waiting, submitted, its outcomes sent back to its loop(s)."""
        group: list[_Waiting] = []
        try:
            while True:
                with self._ready:
                    while not self._queue:
                        if not self._ready.wait(self.IDLE_SECONDS) and not self._queue:
                            return  # idle: the next request starts another (nothing holds on to us)
                    self._await_callers()
                    group = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                started = time.monotonic()
                outcomes = self._decide(group)
                with self._ready:  # the callers about to be answered may come back: wait for them (module doc)
                    answered = time.monotonic()  # counted before they are answered: none of them is queued yet
                    self._expect = min(self.max_batch, len(self._queue) + len(group))
                    self._until = answered + min(self.linger, answered - started)
                self._send_back(group, outcomes)
                group = []
        except BaseException as exc:  # the thread itself is going (not an event's error): fail its requests
            error = exc if isinstance(exc, Exception) else RuntimeError(f"the deciding thread stopped: {exc!r}")
            self._send_back(group, [error] * len(group))
            raise
        finally:
            with self._ready:
                self._thread = None
                if self._queue:  # arrived as this thread went: another takes them
                    self._start()

    def _await_callers(self) -> None:
        """Holding `_ready`, with a request queued: until the callers of the last group are back, or its
        deadline (module doc)."""
        while len(self._queue) < self._expect and (left := self._until - time.monotonic()) > 0:
            self._ready.wait(left)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cc-decide", daemon=True)
        self._thread.start()

    @classmethod
    def _send_back(cls, group: list[_Waiting], outcomes: list[Any]) -> None:
        """The outcomes to their requests' event loops, one callback a loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for (_event, _key, future), outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(cls._settle, settled)
            except RuntimeError:  # that loop was closed meanwhile: no one awaits these
                pass

    def _decide(self, group: list[_Waiting]) -> list[Any]:
        """Each request's Outcome, or the exception to raise in it: `Refused`, or what its event alone raised."""
        EVENT_ID.set(group[0][0].id if len(group) == 1 else None)  # a grouped submit's lines name no one event
        try:
            return self._admit_and_submit([event for event, _, _ in group], [key for _, key, _ in group])
        except Exception:  # decide them alone: only the failing request sees the error
            pass
        outcomes: list[Any] = []
        for event, key, _future in group:
            EVENT_ID.set(event.id)
            try:
                outcomes.append(self._admit_and_submit([event], [key])[0])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _admit_and_submit(self, events: list[Any], keys: list[str | None]) -> list[Any]:
        """Each event's Outcome, or `Refused` for those whose key was refused (never submitted)."""
        checked = {k for k in keys if k is not None}
        refused = self.admit(checked) if checked and self.admit is not None else {}
        admitted = [e for e, k in zip(events, keys, strict=True) if k not in refused]
        outcomes = iter(self.submit(admitted) if admitted else ())
        return [Refused(refused[k]) if k in refused else next(outcomes) for k in keys]

    @staticmethod
    def _settle(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
        for future, outcome in settled:
            if future.done():  # its request went away
                continue
            if isinstance(outcome, Exception):  # submit's outcomes are never exceptions
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
