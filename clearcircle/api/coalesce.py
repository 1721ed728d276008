"""Single events that arrive while the pipeline is busy are decided together, in one submit.

Why: a submit is one transaction (prefetches, campaign and merchant refresh, audit head, commit), which
costs several milliseconds whether it holds one event or a hundred, and the pipeline runs one submit at a
time. Under load, deciding each request alone spends the CPU on that fixed cost; grouping the requests that
queued up during the previous submit spreads it, in arrival order, with nothing added when the server is
idle (a lone request is submitted at once). If a grouped submit fails, its events are retried one by one, so
an error reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from typing import Any

from fastapi.concurrency import run_in_threadpool

from clearcircle.obs.logs import EVENT_ID


class Coalescer:
    """`await decide(event)` -> that event's pipeline Outcome; at most `max_batch` events per submit."""

    def __init__(self, submit: Callable[[Sequence[Any]], list[Any]], max_batch: int = 256) -> None:
        self.submit = submit
        self.max_batch = max_batch
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._draining = False

    async def decide(self, event: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((event, future))
        if not self._draining:
            self._draining = True
            # its own context: lines logged by a grouped submit name no single request's event
            asyncio.get_running_loop().create_task(self._drain(), context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                EVENT_ID.set(group[0][0].id if len(group) == 1 else None)
                try:
                    outcomes = await run_in_threadpool(self.submit, [event for event, _ in group])
                except Exception:  # decide them alone: only the failing request sees the error
                    for event, future in group:
                        EVENT_ID.set(event.id)
                        try:
                            outcome = (await run_in_threadpool(self.submit, [event]))[0]
                        except Exception as exc:
                            if not future.done():
                                future.set_exception(exc)
                            continue
                        if not future.done():
                            future.set_result(outcome)
                    continue
                for (_event, future), outcome in zip(group, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._draining = False
