"""SQLite's write-ahead log copied into the database file on a thread of its own, not by a committing unit.

Why: in WAL mode SQLite checkpoints (copies the log into the database file and syncs both) from inside the
commit that takes the log past 1,000 pages. With a unit's few events dirtying 50-100 pages, that was one
commit in twenty, and it took 15-25 ms of disk syncs on this machine while the pipeline, and every request
waiting on it, stood still: the single-event p99 of `serve` was that stall. Here a thread checkpoints after
each commit, in parallel with the next unit's deciding (SQLite releases the GIL while it copies and
syncs), and the committing thread only waits, before it takes the write lock, for a checkpoint still in
flight when the log is long: a log fully copied is started again from its beginning by the next writer, so
it stays short. Another process's writers are not this one's to
wait for, and theirs can keep the log from being copied whole at any writer's start: past `force_pages`
the thread copies it holding the writers (RESTART), which they wait out like any lock (two processes
deciding small units: the longest log 4,100 pages with it, 18,000 without). A commit past SAFETY_PAGES (the
thread stopped, or far behind) still checkpoints itself.

Everything goes through an SQLite connection of the thread's own. Never open the database, -wal or -shm
file any other way: closing such a file descriptor drops every POSIX lock the process holds on it, SQLite's
included, and corrupts the database (a version that read the log length from the -shm file did exactly
that with two processes: "database disk image is malformed").

The copy is a PASSIVE checkpoint: it never blocks a writer or a reader, and syncs like any checkpoint at
`synchronous=NORMAL`, so durability is SQLite's own (docs/hardening.md, crash safety).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from urllib.parse import quote

log = logging.getLogger(__name__)

RESTART_PAGES = 1_000  # SQLite's own auto-checkpoint size: above it, a writer waits for the copy to catch up
SAFETY_PAGES = 10_000  # a commit past this checkpoints itself (wal_autocheckpoint of every connection)
_SETTLE_S = 0.05  # the longest a writer waits for a checkpoint in flight


class WalCheckpointer:
    """Checkpoints the SQLite database at `path` whenever `committed` says something was written."""

    def __init__(self, path: str, restart_pages: int = RESTART_PAGES, force_pages: int | None = None) -> None:
        """`force_pages`: a log this long is copied and started afresh holding the writers (default 4 x
        `restart_pages`): other processes' writers, which this one does not wait for, can keep it long."""
        self.path = path
        self.restart_pages = restart_pages
        self.force_pages = 4 * restart_pages if force_pages is None else force_pages
        self._cond = threading.Condition()
        self._commits = 0  # commits this process made (`committed` calls)
        self._copied = 0  # `_commits` as it was when the last checkpoint started, once it finished
        self._log_pages = 0  # the log's length in pages at the last checkpoint
        self._stopped = False
        self.checkpoints = 0
        self.complete = 0  # checkpoints that copied the whole log (the next writer starts it afresh)
        self.longest = 0  # the longest log a checkpoint found, in pages
        self.forced = 0  # RESTART checkpoints: the log was too long, writers waited for it
        self._thread = threading.Thread(target=self._run, name="cc-wal-checkpoint", daemon=True)
        self._thread.start()

    @property
    def log_pages(self) -> int:
        """The log's length in pages when the last checkpoint ran."""
        return self._log_pages

    def committed(self) -> None:
        """A transaction of this process committed: copy what it wrote."""
        with self._cond:
            self._commits += 1
            self._cond.notify_all()

    def settle(self, timeout: float = _SETTLE_S) -> None:
        """Before taking the write lock: if the log is long, wait (at most `timeout`) until the checkpoint of
        this process's last commit has finished, so that this write finds the log copied and restarts it."""
        if self._log_pages > self.restart_pages:
            self.caught_up(timeout)

    def caught_up(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until every commit so far has been copied, or the thread stopped; whether
        it did. A commit made meanwhile is waited for too."""
        with self._cond:
            return self._cond.wait_for(lambda: self._copied >= self._commits or self._stopped, timeout)

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def _wait(self) -> int | None:
        """The commit count to copy up to, once there is something to copy; None once stopped."""
        with self._cond:
            while self._copied >= self._commits and not self._stopped:
                self._cond.wait()
            return None if self._stopped else self._commits

    def _run(self) -> None:
        upto = self._wait()  # opened at the first commit: the file exists by then (mode=rw never creates it)
        if upto is None:
            return
        try:
            conn = sqlite3.connect(f"file:{quote(os.path.abspath(self.path))}?mode=rw", uri=True,
                                   isolation_level=None, check_same_thread=False, timeout=1)
        except sqlite3.Error as exc:  # the commits' own auto-checkpoints still keep the log bounded
            log.warning("WAL checkpoints stay with the writers: cannot open %s: %s", self.path, exc)
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
            return
        try:
            while upto is not None:
                try:
                    _busy, pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
                    if pages > self.force_pages:  # other processes' writes keep it long
                        _busy, pages, copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()[0]
                        self.forced += 1
                except sqlite3.Error as exc:  # a locked or vanished file: the next commit tries again
                    log.debug("WAL checkpoint failed: %s", exc)
                    pages, copied = -1, 0
                with self._cond:
                    self.checkpoints += 1
                    self.complete += pages >= 0 and copied == pages
                    self._log_pages = max(pages, 0)
                    self.longest = max(self.longest, self._log_pages)
                    self._copied = upto
                    self._cond.notify_all()
                upto = self._wait()
        finally:
            conn.close()
