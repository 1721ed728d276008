"""SQLite's log is copied into the database on the checkpoint thread (store/checkpoint.py), and stays short."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import orjson
import pytest

from clearcircle.config import Settings
from clearcircle.events.schemas import parse_event_json
from clearcircle.service import open_service
from clearcircle.store.checkpoint import SAFETY_PAGES, WalCheckpointer
from clearcircle.store.db import sqlite_file
from clearcircle.store.repository import Store
from clearcircle.synthetic import generate


def _log_pages(path: Path) -> int:
    """The log's length in pages now (a PASSIVE checkpoint reports it and changes nothing a test checks)."""
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA wal_autocheckpoint={SAFETY_PAGES}")  # as a Store's connections: never itself here
    conn.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, v TEXT)")
    return conn


def _unit(conn: sqlite3.Connection, checkpoints: WalCheckpointer | None, rows: int = 20,
          settle: bool = True) -> None:
    """What an optimistic unit does on SQLite: read in a snapshot, then lock, write and commit."""
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM t").fetchone()
    conn.execute("COMMIT")
    if checkpoints is not None and settle:
        checkpoints.settle(timeout=5)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(os.urandom(8).hex(), "x" * 200) for _ in range(rows)])
    conn.execute("COMMIT")
    if checkpoints is not None:
        checkpoints.committed()


def test_a_writer_waits_for_the_copy_of_a_long_log_and_starts_it_afresh(tmp_path: Path) -> None:
    """restart_pages=0: every log is long, so every unit waits for the copy of the one before and starts
    the log afresh; no checkpoint then finds more than a unit's pages (at most about 45: 20 rows, each a
    table page and an index page). Without the wait the copy trails the writes and the log is never
    started afresh: the longest was about 4,900 pages."""
    path = tmp_path / "a.db"
    conn = _writer(path)
    checkpoints = WalCheckpointer(str(path), restart_pages=0, force_pages=10**9)
    try:
        for _ in range(300):  # some 5,000 pages written in all
            _unit(conn, checkpoints)
        assert checkpoints.complete >= 290
        assert checkpoints.longest <= 100, "a log was not started afresh once copied"
    finally:
        checkpoints.close()
        conn.close()
    assert conn is not None and not checkpoints._thread.is_alive()


def test_a_log_past_force_pages_is_copied_holding_the_writers_and_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    conn = _writer(path)
    checkpoints = WalCheckpointer(str(path), restart_pages=1, force_pages=5)
    try:
        _unit(conn, checkpoints, rows=200, settle=False)  # far more than 5 pages
        assert checkpoints.caught_up(timeout=30)
        assert checkpoints.forced == 1 and checkpoints.longest > 5
        _unit(conn, checkpoints, rows=1, settle=False)
        assert checkpoints.caught_up(timeout=30)
        assert checkpoints._log_pages <= 5, "RESTART: the next write starts the log afresh"
    finally:
        checkpoints.close()
        conn.close()


def test_without_the_thread_nothing_copies_the_log_below_the_safety_size(tmp_path: Path) -> None:
    """The control: the same writes with the commits' own checkpoints set to the safety size grow the log."""
    path = tmp_path / "b.db"
    conn = _writer(path)
    try:
        for _ in range(400):
            _unit(conn, None)
        assert _log_pages(path) > 1_000
    finally:
        conn.close()


def test_settle_returns_at_once_while_the_log_is_short(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = _writer(path)
    checkpoints = WalCheckpointer(str(path), restart_pages=10**9)
    try:
        checkpoints._commits += 5  # commits the thread has not copied: settle would wait for them
        checkpoints.settle(timeout=30)  # returns at once: the log is short (a hang here fails the run)
    finally:
        checkpoints.close()
        conn.close()


def test_a_missing_file_stops_the_thread_and_leaves_checkpoints_to_the_commits(tmp_path: Path) -> None:
    checkpoints = WalCheckpointer(str(tmp_path / "absent" / "x.db"))
    checkpoints.committed()
    checkpoints._thread.join(timeout=10)
    assert not checkpoints._thread.is_alive()
    assert not (tmp_path / "absent").exists()  # mode=rw: never creates the file
    checkpoints.settle(timeout=30)  # stopped: no wait
    checkpoints.close()


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:////var/x/cc.db", "/var/x/cc.db"),
    ("sqlite:///rel/cc.db", "rel/cc.db"),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("postgresql://u@h/db", None),
    ("not a url", None),
])
def test_sqlite_file(url: str, expected: str | None) -> None:
    assert sqlite_file(url) == expected


def test_a_store_on_a_file_checkpoints_on_its_thread(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        assert store.checkpoints is not None
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == SAFETY_PAGES
    finally:
        store.close()
    assert not store.checkpoints._thread.is_alive()
    memory = Store("sqlite://")
    assert memory.checkpoints is None
    memory.close()


def test_small_units_of_a_pipeline_keep_the_log_short_and_every_decision(tmp_path: Path) -> None:
    """Units of two events, as the API's coalescer makes under light load: the log stays near its restart
    size instead of growing by every unit's pages, and nothing is lost on the way."""
    path = tmp_path / "e.db"
    service = open_service(Settings(db_url=f"sqlite:///{path}", hash_key="k", key_file=tmp_path / "k"))
    store = service.store
    events = [parse_event_json(orjson.dumps(e)) for e in generate(1_600)]
    try:
        for i in range(0, len(events), 2):
            service.pipeline.submit(events[i : i + 2])
        assert store.checkpoints is not None and store.checkpoints.complete > 0
        assert _log_pages(path) <= 3 * 1_000
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM decisions").scalar() == len(events)
        assert store.verify_audit()[1] == []
    finally:
        service.close()


def test_a_begin_that_cannot_take_the_write_lock_fails_as_sqlalchemy_does_and_reads_go_on(tmp_path: Path) -> None:
    """`BEGIN IMMEDIATE` runs on the DB-API connection (store/db.py): a lock it cannot get is still raised as
    SQLAlchemy's OperationalError, and leaves nothing half-open."""
    from sqlalchemy import event, text
    from sqlalchemy.exc import OperationalError

    from clearcircle.store.db import make_engine, reads

    path = tmp_path / "locked.db"
    engine = make_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout=50"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"), engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with reads(engine).begin() as conn:  # a snapshot needs no write lock
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalars().all() == [2]
    engine.dispose()
