"""Single events that arrive while the pipeline is busy are decided together, in one submit.

Why: a submit is one transaction (prefetches, campaign and merchant refresh, audit head, commit), which
costs several milliseconds whether it holds one event or a hundred, and the pipeline runs one submit at a
time. Under load, deciding each request alone spends the CPU on that fixed cost; grouping the requests that
queued up during the previous submit spreads it, in arrival order, with nothing added when the server is
idle (a lone request is submitted at once). If a grouped submit fails, its events are retried one by one, so
an error reaches only the request that caused it.

A request may leave its API key to be checked with its group (`admit`): the keys of a group are looked up
together, in one query on the coalescer's thread just before the submit, instead of one query per request
on the event loop (each of those gave the GIL to the deciding thread and waited to get it back: +20%
single-event throughput, docs/hardening.md, Load). A refused request's event is never submitted.

Submits run on one thread of the coalescer's own (the pipeline decides one submit at a time anyway):
handing work to it through `loop.run_in_executor` costs a fraction of anyio's `run_in_threadpool`, which is
measurable at a thousand requests a second (docs/hardening.md, Load).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clearcircle.obs.logs import EVENT_ID


class Refused(Exception):
    """A request refused by `admit` (its key unknown, revoked or of a role not admitted); `error` says why."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Coalescer:
    """`await decide(event)` -> that event's pipeline Outcome; at most `max_batch` events per submit.

    `decide(event, key)` has the key checked with the group: `admit(keys)` returns the refusal of each key
    refused (absent: admitted), and `decide` raises `Refused` with it."""

    def __init__(self, submit: Callable[[Sequence[Any]], list[Any]], max_batch: int = 256,
                 admit: Callable[[set[str]], dict[str, Exception]] | None = None) -> None:
        self.submit = submit
        self.admit = admit
        self.max_batch = max_batch
        self._queue: list[tuple[Any, str | None, asyncio.Future[Any]]] = []
        self._draining = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cc-decide")

    def _admit_and_submit(self, events: list[Any], keys: list[str | None]) -> list[Any]:
        """Each event's Outcome, or `Refused` for those whose key was refused (never submitted)."""
        checked = {k for k in keys if k is not None}
        refused = self.admit(checked) if checked and self.admit is not None else {}
        admitted = [e for e, k in zip(events, keys, strict=True) if k not in refused]
        outcomes = iter(self.submit(admitted) if admitted else ())
        return [Refused(refused[k]) if k in refused else next(outcomes) for k in keys]

    async def _submit(self, events: list[Any], keys: list[str | None]) -> list[Any]:
        """`submit` on the coalescer's thread, in a copy of this context (the event id of the log lines)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, context.run, self._admit_and_submit, events, keys)

    async def decide(self, event: Any, key: str | None = None) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((event, key, future))
        if not self._draining:
            self._draining = True
            # its own context: lines logged by a grouped submit name no single request's event
            asyncio.get_running_loop().create_task(self._drain(), context=contextvars.Context())
        return await future

    @staticmethod
    def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
        if future.done():
            return
        if isinstance(outcome, Refused):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    async def _drain(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                EVENT_ID.set(group[0][0].id if len(group) == 1 else None)
                try:
                    outcomes = await self._submit([event for event, _, _ in group], [key for _, key, _ in group])
                except Exception:  # decide them alone: only the failing request sees the error
                    for event, key, future in group:
                        EVENT_ID.set(event.id)
                        try:
                            outcome = (await self._submit([event], [key]))[0]
                        except Exception as exc:
                            if not future.done():
                                future.set_exception(exc)
                            continue
                        self._settle(future, outcome)
                    continue
                for (_event, _key, future), outcome in zip(group, outcomes, strict=True):
                    self._settle(future, outcome)
        finally:
            self._draining = False
