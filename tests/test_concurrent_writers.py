"""Several writer processes on one store (stream workers, `serve --workers`): no update is lost.

Two pipelines with their own engines (as two processes would have) decide, at the same time, accepted
friend requests that all touch one account. They decide at once (SQLite: each in its own snapshot, queueing
only for the write lock; PostgreSQL: unlocked reads) and merge the shared account's new friends at commit
(tests/test_optimistic_units.py tests each case alone): the shared account ends with every friend, and the
audit chain has one entry per decision.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.service import open_service

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))
PER_WRITER = 40


def _accept(writer: int, i: int) -> object:
    at = T0 + timedelta(seconds=2 * i + writer)
    return parse_event({"id": f"cw-{writer}-{i}", "type": "friend_request_answered", "occurred_at": at.isoformat(),
                        "actor": f"friend-{writer}-{i}", "body": {"target": "hub", "accepted": True}})


@pytest.mark.parametrize("batch", [1, 5])
def test_two_writers_never_lose_an_update(db_url, tmp_path, batch):
    settings = Settings(db_url=db_url, key_file=tmp_path / "k")
    services = [open_service(settings) for _ in range(2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(writer: int) -> None:
        try:
            start.wait()
            events = [_accept(writer, i) for i in range(PER_WRITER)]
            for lo in range(0, PER_WRITER, batch):
                services[writer].pipeline.submit(events[lo : lo + batch])
        except BaseException as exc:  # noqa: BLE001  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors
    try:
        hub = services[0].store.account_state("hub")
        assert hub is not None
        expected = {f"friend-{w}-{i}" for w in range(2) for i in range(PER_WRITER)}
        assert set(hub.friends) == expected  # a lost update would drop the other writer's friends
        for w in range(2):  # and each friend has the hub
            state = services[1].store.account_state(f"friend-{w}-0")
            assert state is not None and "hub" in state.friends
        checked, problems = services[0].store.verify_audit()
        assert problems == [] and checked >= 2 * PER_WRITER
    finally:
        for s in services:
            s.close()


def test_the_working_set_empties_itself_when_states_grow_and_decisions_do_not_change(tmp_path, monkeypatch):
    """A server deciding for the same accounts for hours: its cache of their growing states stays bounded,
    and emptying it changes no decision (everything is read back from the store)."""
    from clearcircle.store.unit import WorkingSet
    from clearcircle.synthetic import generate

    events = [parse_event(e) for e in generate(3000, accounts=200, seed=11)]
    verdicts = {}
    for bound in (10**12, 20_000):  # unbounded, then a bound hit every few batches
        monkeypatch.setattr(WorkingSet, "MAX_STATE_BYTES", bound)
        svc = open_service(Settings(db_url=f"sqlite:///{tmp_path / f'ws{bound}.db'}", key_file=tmp_path / "k"))
        try:
            resets, seen = 0, []
            for lo in range(0, len(events), 100):
                svc.pipeline.submit(events[lo : lo + 100])
                ws = svc.pipeline._working_set
                seen.append(ws.state_bytes)
                resets += ws.state_bytes < max(seen[:-1], default=0)
            with svc.store.engine.connect() as conn:
                verdicts[bound] = [d[0] for d in conn.exec_driver_sql(
                    "SELECT verdict FROM decisions ORDER BY occurred_ms, event_id").all()]
            if bound == 20_000:
                assert resets >= 3 and max(seen) < 20_000 + 100 * 4096  # emptied, never far over the bound
            else:
                assert max(seen) > 20_000  # the mix does grow past the small bound
        finally:
            svc.close()
    assert verdicts[10**12] == verdicts[20_000]
