"""Single events that arrive while the pipeline is busy are decided together, in one submit.

Why: a submit is one transaction (prefetches, campaign and merchant refresh, audit head, commit), which
costs several milliseconds whether it holds one event or a hundred, and the pipeline runs one submit at a
time. Under load, deciding each request alone spends the CPU on that fixed cost; grouping the requests that
queued up during the previous submit spreads it, in arrival order, with nothing added when the server is
idle (a lone request is submitted at once). If a grouped submit fails, its events are retried one by one, so
an error reaches only the request that caused it.

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


class Coalescer:
    """`await decide(event)` -> that event's pipeline Outcome; at most `max_batch` events per submit."""

    def __init__(self, submit: Callable[[Sequence[Any]], list[Any]], max_batch: int = 256) -> None:
        self.submit = submit
        self.max_batch = max_batch
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._draining = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cc-decide")

    async def _submit(self, events: list[Any]) -> list[Any]:
        """`submit` on the coalescer's thread, in a copy of this context (the event id of the log lines)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._thread, context.run, self.submit, events)

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
                    outcomes = await self._submit([event for event, _ in group])
                except Exception:  # decide them alone: only the failing request sees the error
                    for event, future in group:
                        EVENT_ID.set(event.id)
                        try:
                            outcome = (await self._submit([event]))[0]
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
