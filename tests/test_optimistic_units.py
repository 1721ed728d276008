"""Units of events decided at once by two workers on one store (store.unit: optimistic units, the unit log).

Each case opens one worker's unit, lets a second worker (its own engine, as another process) commit a unit
in the middle of it, and then lets the first commit: friend lists merge, a clash of two full changes is a
UnitConflict that the pipeline answers by deciding the batch again holding the lock, and the first worker's
working set drops exactly what the second changed (or everything, after a write the log cannot itemise).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.service import Service, open_service
from clearcircle.store.unit import UnitConflict, WorkingSet, append_audit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))
# both stores: on SQLite an optimistic unit reads in a snapshot and takes the write lock only to flush
pytestmark = pytest.mark.parametrize("db_backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
                                     indirect=True)


@pytest.fixture
def two(make_db_url: Any, tmp_path: Path) -> Iterator[list[Service]]:
    settings = Settings(db_url=make_db_url(), key_file=tmp_path / "k")
    services = [open_service(settings) for _ in range(2)]
    yield services
    for s in services:
        s.close()


def _event(i: int, kind: str, actor: str, **body: Any) -> Any:
    return parse_event({"id": f"ou-{i}", "type": kind, "occurred_at": (T0 + timedelta(seconds=i)).isoformat(),
                        "actor": actor, "body": body})


def _seed(service: Service, *accounts: str) -> None:
    with service.store.unit(WorkingSet(), events=True) as uow:
        for a in accounts:
            uow.touch(a).first_seen_ms = 1
        uow.add_audit(1, "test", "seed", "{}")


def test_friends_gained_meanwhile_are_merged_with_a_full_change(two: list[Service]) -> None:
    a, b = two
    _seed(a, "x", "y", "z")
    ws = WorkingSet()
    with a.store.unit(ws, events=True) as mine:
        mine.touch("x").registered_ms = 5  # a full change of x, decided while b works
        mine.add_friend("y", "x")  # y only gains a friend here
        mine.add_audit(5, "test", "x", "{}")
        with b.store.unit(WorkingSet(), events=True) as theirs:
            theirs.add_friend("x", "z")  # x gains a friend over there
            theirs.touch("y").registered_ms = 7  # and y changes in full
            theirs.add_audit(6, "test", "y", "{}")
    x, y = a.store.account_state("x"), a.store.account_state("y")
    assert x is not None and y is not None
    assert x.registered_ms == 5 and x.friends == ["z"]  # ours kept, theirs merged in
    assert y.registered_ms == 7 and y.friends == ["x"]  # theirs kept, ours merged in
    assert ws.accounts["x"].friends == ["z"] and ws.accounts["y"].registered_ms == 7  # the working set agrees
    assert a.store.verify_audit()[1] == []


def test_an_earlier_first_seen_time_merges_with_a_full_change_both_ways(two: list[Service]) -> None:
    """A reporter is seen in its target's partition while its own partition changes it in full: the
    earliest first-seen time and the full change both stand, with no conflict, whichever side did which."""
    a, b = two
    _seed(a, "x", "y")  # first seen at 1
    with a.store.unit(WorkingSet(), events=True) as mine:
        mine.touch("x").registered_ms = 500  # a full change of x
        mine.seen("y", 0)  # y acted earlier than it was first seen: only that changes
        mine.seen("x", 3)  # later than x's first-seen time: nothing to change
        mine.add_audit(5, "test", "x", "{}")
        with b.store.unit(WorkingSet(), events=True) as theirs:
            theirs.seen("x", -4)
            theirs.touch("y").account_type = "merchant"  # a full change of y
            theirs.add_audit(6, "test", "y", "{}")
    x, y = a.store.account_state("x"), a.store.account_state("y")
    assert x is not None and y is not None
    assert (x.registered_ms, x.first_seen_ms) == (500, -4)  # ours kept, their earlier time merged in
    assert (y.account_type, y.first_seen_ms) == ("merchant", 0)  # theirs kept, our earlier time merged in
    assert a.store.verify_audit()[1] == []


def test_a_report_decided_elsewhere_does_not_conflict_with_the_reporters_own_batch(
        two: list[Service], monkeypatch: pytest.MonkeyPatch) -> None:
    """The report is in the target's partition (another worker) and is the reporter's first act; meanwhile the
    reporter's own partition registers it. Both batches stand as decided first time (no batch decided
    again) and the reporter's state holds both: the registration and the report's earlier time."""
    a, b = two
    _seed(a, "someone")
    pipeline = a.pipeline
    real = pipeline._decide
    interfered: list[bool] = []

    def decide_while_b_takes_a_report(uow: Any, event: Any) -> dict:
        if not interfered:
            interfered.append(True)
            b.pipeline.submit([_event(1, "report", "reporter", target="seller", reason="marketing")])
        return real(uow, event)

    monkeypatch.setattr(pipeline, "_decide", decide_while_b_takes_a_report)
    pipeline.submit([_event(5, "account_registered", "reporter", account_type="personal")])
    assert interfered and pipeline.conflicts == 0 and b.pipeline.conflicts == 0
    state = a.store.account_state("reporter")
    assert state is not None and state.registered_ms is not None and state.account_type == "personal"
    assert state.first_seen_ms == int((T0 + timedelta(seconds=1)).timestamp() * 1000)  # the report's time
    assert a.store.verify_audit()[1] == []


def test_two_full_changes_of_one_account_conflict(two: list[Service]) -> None:
    a, b = two
    _seed(a, "x")
    with pytest.raises(UnitConflict):
        with a.store.unit(WorkingSet(), events=True) as mine:
            mine.touch("x").first_seen_ms = 5
            mine.add_audit(5, "test", "x", "{}")
            with b.store.unit(WorkingSet(), events=True) as theirs:
                theirs.touch("x").first_seen_ms = 7
                theirs.add_audit(6, "test", "x", "{}")
    x = a.store.account_state("x")
    assert x is not None and x.first_seen_ms == 7  # the loser wrote nothing


def test_the_pipeline_decides_a_conflicting_batch_again_holding_the_lock(two: list[Service],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = two
    _seed(a, "someone")  # the audit head row exists before two units race (a new store creates it in a unit)
    pipeline = a.pipeline
    real = pipeline._decide
    interfered: list[bool] = []

    def decide_while_b_strikes(uow: Any, event: Any) -> dict:
        if not interfered:  # once: another worker bans "spammer" while this batch is being decided
            interfered.append(True)
            b.pipeline.submit([_event(90, "moderator_action", "mod-1", target="spammer", action="ban",
                                      reason="test")])
        return real(uow, event)

    monkeypatch.setattr(pipeline, "_decide", decide_while_b_strikes)
    # a full change of "spammer" here too (a registration), so the two units cannot merge
    out = pipeline.submit([_event(1, "account_registered", "spammer", account_type="personal")])
    assert pipeline.conflicts == 1
    assert len(out) == 1 and not out[0].duplicate
    state = a.store.account_state("spammer")
    assert state is not None and state.ban is not None  # b's ban survived a's second, locked attempt
    assert a.store.verify_audit()[1] == []


def test_the_working_set_drops_what_another_worker_changed_and_keeps_the_rest(two: list[Service]) -> None:
    a, b = two
    _seed(a, "kept", "changed")
    ws = WorkingSet()
    with a.store.unit(ws, events=True) as uow:
        uow.state("kept"), uow.state("changed")
        uow.record_hit("key-1", "posts", 10, "e1", "m")
        uow.add_audit(10, "test", "read", "{}")
    assert {"kept", "changed"} <= ws.accounts.keys() and "key-1" in ws.loaded_since
    with b.store.unit(WorkingSet(), events=True) as theirs:
        theirs.touch("changed").first_seen_ms = 9
        theirs.record_hit("key-1", "posts", 11, "e2", "m")
        theirs.add_audit(11, "test", "changed", "{}")
    kept = ws.accounts["kept"]
    with a.store.unit(ws, events=True) as uow:
        assert uow.reused and uow.forgotten == {"changed"}
        assert ws.accounts.get("kept") is kept and "changed" not in ws.accounts
        assert uow.state("changed").first_seen_ms == 9  # read again: b's change
        assert uow.count("key-1", "posts", 0, 100) == 2  # the window too
    with b.store.engine.begin() as conn:  # a write the unit log cannot itemise (a staff step, a publication)
        append_audit(conn, [(12, "staff_step", "kept", "{}")])
    with a.store.unit(ws, events=True) as uow:
        assert not uow.reused and ws.accounts == {}


def test_the_unit_log_is_pruned(two: list[Service], monkeypatch: pytest.MonkeyPatch) -> None:
    import clearcircle.store.unit as unit

    monkeypatch.setattr(unit, "_PRUNE_EVERY", 3)
    monkeypatch.setattr(unit, "_LOG_KEEP", 4)
    a, _b = two
    for i in range(12):
        with a.store.unit(WorkingSet(), events=True) as uow:
            uow.touch(f"acc-{i}")
            uow.add_audit(i, "test", "x", "{}")
    with a.store.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(text("SELECT seq FROM unit_log ORDER BY seq"))]
    assert seqs and seqs[0] > 12 - 4 - 3 and seqs[-1] == 12


def test_an_identifier_another_worker_links_is_seen_by_a_kept_working_set(two: list[Service]) -> None:
    a, b = two
    ws = WorkingSet()
    with a.store.unit(ws, events=True) as uow:  # a knows "old" and who shares its device: nobody
        uow.link("device_hash", "d1", "old", 1)
        uow.touch("old")
        uow.add_audit(1, "test", "old", "{}")
    with a.store.unit(ws, events=True) as uow:
        assert uow.linked_accounts("old") == []
        uow.add_audit(2, "test", "old", "{}")
    with b.store.unit(WorkingSet(), events=True) as theirs:  # a new account registers on that device over there
        theirs.link("device_hash", "d1", "new", 3)
        theirs.touch("new")
        theirs.add_audit(3, "test", "new", "{}")
    with a.store.unit(ws, events=True) as uow:
        assert uow.reused  # the working set was kept, not emptied ...
        assert uow.linked_accounts("old") == [("device_hash", "new")]  # ... and still sees the new link

