"""api/coalesce.py: single events waiting while a submit runs are decided together, in order; errors stay local."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from clearcircle.api.coalesce import Coalescer


def test_waiting_events_are_grouped_in_arrival_order_and_a_failure_stays_with_its_request():
    calls: list[list[str]] = []
    gate = threading.Event()

    def submit(events):  # noqa: ANN001, ANN202
        ids = [e.id for e in events]
        calls.append(ids)
        if len(calls) == 1:
            gate.wait(5)  # the first submit is slow: the others queue behind it
        if "bad" in ids and len(ids) == 1:
            raise RuntimeError("bad event")
        if "bad" in ids:
            raise RuntimeError("group with a bad event")
        return [f"decided {i}" for i in ids]

    async def main():  # noqa: ANN202
        coalescer = Coalescer(submit, max_batch=3)
        first = asyncio.ensure_future(coalescer.decide(SimpleNamespace(id="a")))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(coalescer.decide(SimpleNamespace(id=i))) for i in ("b", "c", "bad", "d")]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert results[:3] == ["decided a", "decided b", "decided c"]
    assert isinstance(results[3], RuntimeError) and str(results[3]) == "bad event"
    assert results[4] == "decided d"
    assert calls[:2] == [["a"], ["b", "c", "bad"]]  # grouped, in order, at most max_batch
    assert ["bad"] in calls and ["d"] in calls
