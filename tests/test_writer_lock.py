"""Units of events on one SQLite file queue for its write lock in the kernel (store.writer_lock): a unit holds
the queue from the moment it takes the write lock until its transaction has ended, whatever ends it, and a
writer waiting in the queue goes on as soon as it is let go."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from clearcircle.config import Settings
from clearcircle.service import open_service
from clearcircle.store.unit import WorkingSet
from clearcircle.store.writer_lock import WriterLock


def _free(path: str) -> bool:
    """Whether another open file (as another process would have) can take the lock now."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_a_unit_holds_the_queue_from_its_write_until_its_transaction_ends(tmp_path: Path) -> None:
    service = open_service(Settings(db_url=f"sqlite:///{tmp_path / 'w.db'}", key_file=tmp_path / "k"))
    store = service.store
    assert store.writer is not None
    lock_file = store.writer.path
    try:
        with store.unit(WorkingSet(), events=True) as uow:
            uow.touch("a").first_seen_ms = 1
            uow.add_audit(1, "test", "a", "{}")
            assert _free(lock_file)  # deciding: no lock
            uow.flush(2)
            assert not _free(lock_file)  # written, not yet committed
        assert _free(lock_file)  # committed
        with pytest.raises(RuntimeError, match="after the write"):
            with store.unit(WorkingSet(), events=True) as uow:
                uow.touch("b").first_seen_ms = 3
                uow.add_audit(3, "test", "b", "{}")
                uow.flush(4)
                raise RuntimeError("after the write")
        assert _free(lock_file)  # rolled back
        assert store.account_state("a") is not None and store.account_state("b") is None
    finally:
        service.close()


def test_a_waiting_writer_goes_on_when_the_queue_is_let_go(tmp_path: Path) -> None:
    """Two instances (two open files, as two processes have): the second waits for the first, and only it."""
    first, second = WriterLock(str(tmp_path / "q.db")), WriterLock(str(tmp_path / "q.db"))
    first.acquire()
    got = threading.Event()

    def take() -> None:
        second.acquire()
        got.set()
        second.release()

    thread = threading.Thread(target=take)
    thread.start()
    held = True
    try:
        assert not got.wait(0.3)  # queued behind the first
        released = time.perf_counter()
        first.release()
        held = False
        assert got.wait(5)
        assert time.perf_counter() - released < 0.5  # woken, not polling on a timer
    finally:
        if held:
            first.release()
        thread.join(5)
        first.close()
        second.close()
