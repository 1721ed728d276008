"""api/coalesce.py: single events waiting while a submit runs are decided together, in order; errors stay local."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from clearcircle.api.coalesce import Coalescer, Refused


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


def test_keys_are_checked_once_for_a_group_and_a_refused_request_is_never_submitted():
    submitted: list[list[str]] = []
    admitted_calls: list[set[str]] = []
    gate = threading.Event()

    def submit(events):  # noqa: ANN001, ANN202
        submitted.append([e.id for e in events])
        if len(submitted) == 1:
            gate.wait(5)
        return [f"decided {e.id}" for e in events]

    def admit(keys):  # noqa: ANN001, ANN202
        admitted_calls.append(set(keys))
        return {k: PermissionError(f"refused {k}") for k in keys if k.startswith("bad")}

    async def main():  # noqa: ANN202
        coalescer = Coalescer(submit, max_batch=10, admit=admit)
        first = asyncio.ensure_future(coalescer.decide(SimpleNamespace(id="a"), "good"))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(coalescer.decide(SimpleNamespace(id=i), k))
                for i, k in (("b", "bad-1"), ("c", None), ("d", "good"), ("e", "bad-1"), ("f", "good-2"))]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == "decided a"
    assert isinstance(results[1], Refused) and str(results[1].error) == "refused bad-1"
    assert results[2:4] == ["decided c", "decided d"]
    assert isinstance(results[4], Refused)
    assert results[5] == "decided f"
    assert submitted == [["a"], ["c", "d", "f"]]  # the refused events never reach the pipeline
    assert admitted_calls == [{"good"}, {"bad-1", "good", "good-2"}]  # one look-up a group; no key: not asked


def test_a_group_refused_whole_submits_nothing():
    submitted: list[list[str]] = []

    async def main():  # noqa: ANN202
        coalescer = Coalescer(lambda events: submitted.append(events) or [],
                              admit=lambda keys: {k: PermissionError(k) for k in keys})
        return await asyncio.gather(coalescer.decide(SimpleNamespace(id="a"), "k"), return_exceptions=True)

    assert isinstance(asyncio.run(main())[0], Refused)
    assert submitted == []


def test_the_thread_goes_when_idle_and_a_request_that_went_away_does_not_stop_the_others():
    gate = threading.Event()

    def submit(events):  # noqa: ANN001, ANN202
        if events[0].id == "slow":
            gate.wait(5)
        return [f"decided {e.id}" for e in events]

    coalescer = Coalescer(submit)
    coalescer.IDLE_SECONDS = 0.05

    async def main():  # noqa: ANN202
        slow = asyncio.ensure_future(coalescer.decide(SimpleNamespace(id="slow")))
        await asyncio.sleep(0.05)
        slow.cancel()  # the client went away while its event was being decided
        gate.set()
        return await coalescer.decide(SimpleNamespace(id="next"))

    assert asyncio.run(main()) == "decided next"
    for _ in range(100):
        if coalescer._thread is None:
            break
        threading.Event().wait(0.02)
    assert coalescer._thread is None  # idle: gone, holding nothing
    assert asyncio.run(coalescer.decide(SimpleNamespace(id="later"))) == "decided later"  # started again


def test_a_thread_that_dies_fails_its_requests_and_the_next_request_gets_a_new_one(monkeypatch):
    ended = threading.Event()
    seen: list[BaseException | None] = []
    # the thread goes with the error raised (its own end, not an event's): caught here instead of reported
    monkeypatch.setattr(threading, "excepthook", lambda args: (seen.append(args.exc_value), ended.set()))

    def submit(events):  # noqa: ANN001, ANN202
        if events[0].id == "fatal":
            raise SystemExit("stop")  # not an event's error: the thread itself goes
        return [f"decided {e.id}" for e in events]

    coalescer = Coalescer(submit)

    async def main():  # noqa: ANN202
        return await asyncio.gather(coalescer.decide(SimpleNamespace(id="fatal")), return_exceptions=True)

    (failed,) = asyncio.run(main())
    assert isinstance(failed, RuntimeError) and "stopped" in str(failed)
    assert ended.wait(5) and isinstance(seen[0], SystemExit)
    assert asyncio.run(coalescer.decide(SimpleNamespace(id="after"))) == "decided after"


def _closed_loop_groups(linger: float, callers: int = 8, rounds: int = 30) -> list[int]:
    """Group sizes when `callers` callers each ask again as soon as they are answered (a backend's pool of
    connections) after a time of its own (0-7 ms), with a submit that takes ~30 ms (the wait is capped by
    it: room for the callers to come back on a loaded machine)."""
    sizes: list[int] = []

    def submit(events):  # noqa: ANN001, ANN202
        sizes.append(len(events))
        threading.Event().wait(0.03 + 0.001 * len(events))
        return [e.id for e in events]

    coalescer = Coalescer(submit, linger=linger)

    async def caller(n: int) -> None:
        for i in range(rounds):
            assert await coalescer.decide(SimpleNamespace(id=f"{n}-{i}")) == f"{n}-{i}"
            await asyncio.sleep(0.001 * n)  # writing the answer, the caller's turn: not all back at once

    async def main():  # noqa: ANN202
        await asyncio.gather(*(caller(n) for n in range(callers)))

    asyncio.run(main())
    assert sum(sizes) == callers * rounds
    return sizes[3:]  # past the start, when the callers first meet


def test_callers_that_ask_again_at_once_are_decided_in_one_group_not_two_that_take_turns():
    alone = _closed_loop_groups(linger=0.0)
    waited = _closed_loop_groups(linger=0.1)
    full = sum(size == 8 for size in waited) / len(waited)
    assert full >= 0.8, waited  # the answered callers are waited for: the whole pool is one group
    assert sum(size == 8 for size in alone) / len(alone) < 0.5, alone  # without: cohorts that take turns
    assert len(waited) < len(alone)


def test_a_request_after_the_wait_is_taken_at_once_and_the_wait_never_outlasts_the_last_group():
    took: list[float] = []

    def submit(events):  # noqa: ANN001, ANN202
        threading.Event().wait(0.1)  # each group takes 100 ms to decide
        return [e.id for e in events]

    coalescer = Coalescer(submit, linger=10.0)  # a linger far longer than any group takes

    async def timed(event_id: str) -> str:
        started = asyncio.get_running_loop().time()
        result = await coalescer.decide(SimpleNamespace(id=event_id))
        took.append(asyncio.get_running_loop().time() - started)
        return result

    async def main():  # noqa: ANN202
        first = await asyncio.gather(*(timed(f"a{i}") for i in range(4)))  # 4 answered: 4 expected back
        alone = await timed("b")  # only 1 comes: it waits at most as long as the last group took (100 ms)
        await asyncio.sleep(0.3)  # past that wait: a request now is taken at once
        return first, alone, await timed("c")

    assert asyncio.run(main()) == (["a0", "a1", "a2", "a3"], "b", "c")
    assert took[4] < 0.1 + 0.1 + 0.12, took  # its own submit, and a wait cut at the last group's 100 ms
    assert took[5] < 0.1 + 0.12, took  # no wait at all
