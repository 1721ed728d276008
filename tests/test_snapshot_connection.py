"""On SQLite, units of events keep one connection between units (Store._snapshot) instead of taking one from
the pool and giving it back each time: one at a time uses it, a concurrent unit takes a pooled one, and after
an error it is given up, with nothing of the failed unit stored."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from clearcircle.config import Settings
from clearcircle.service import open_service
from clearcircle.store.unit import WorkingSet


def _write(store, account: str, at: int) -> None:  # noqa: ANN001
    with store.unit(WorkingSet(), events=True) as uow:
        uow.touch(account).first_seen_ms = at
        uow.add_audit(at, "test", account, "{}")


def _accounts(store) -> list[str]:  # noqa: ANN001
    with store.reads.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM accounts ORDER BY id"))]


def test_units_keep_one_connection_and_give_it_up_after_an_error(tmp_path: Path) -> None:
    service = open_service(Settings(db_url=f"sqlite:///{tmp_path / 's.db'}", key_file=tmp_path / "k"))
    store = service.store
    try:
        pool = store.engine.pool
        _write(store, "a", 1)
        assert pool.checkedout() == 1  # kept for the next unit
        _write(store, "b", 2)
        assert pool.checkedout() == 1  # the same one, not a second
        with pytest.raises(RuntimeError, match="mid-unit"):
            with store.unit(WorkingSet(), events=True) as uow:
                uow.touch("c").first_seen_ms = 3
                uow.add_audit(3, "test", "c", "{}")
                raise RuntimeError("mid-unit")
        assert pool.checkedout() == 0  # given up
        _write(store, "d", 4)
        assert _accounts(store) == ["a", "b", "d"]
        assert store.verify_audit()[1] == []
    finally:
        service.close()
    assert pool.checkedout() == 0


def test_a_concurrent_unit_takes_a_pooled_connection(tmp_path: Path) -> None:
    service = open_service(Settings(db_url=f"sqlite:///{tmp_path / 's.db'}", key_file=tmp_path / "k"))
    store = service.store
    inside, go_on = threading.Event(), threading.Event()
    seen: list[int] = []

    def first() -> None:
        with store.unit(WorkingSet(), events=True) as uow:
            uow.touch("x").first_seen_ms = 1
            uow.add_audit(1, "test", "x", "{}")
            inside.set()
            go_on.wait(10)

    try:
        _write(store, "w", 0)
        thread = threading.Thread(target=first)
        thread.start()
        assert inside.wait(10)
        with store.unit(WorkingSet(), events=True) as uow:  # while the first holds the kept connection
            seen.append(store.engine.pool.checkedout())
            uow.touch("y").first_seen_ms = 2
            uow.add_audit(2, "test", "y", "{}")
        go_on.set()
        thread.join(10)
        assert seen == [2]
        assert _accounts(store) == ["w", "x", "y"]
        assert store.verify_audit()[1] == []
    finally:
        go_on.set()
        service.close()
