"""Processes writing one SQLite file queue for its write lock in the kernel, and are woken when it is free.

Why: SQLite has no wait queue. A writer that finds the lock taken sleeps in its busy handler, 1, 2, 5, 10,
15, 20, 25 ms... and tries again, so with two `serve` processes a unit that misses the lock by a fraction
of a millisecond waits 1-3 ms or more for it: that was the tail latency of `serve --workers 2`. Units of
events therefore take an exclusive `flock` on a file beside the database (`<db>-writer.lock`) before
`BEGIN IMMEDIATE` and let it go once their transaction has ended: the next process in the kernel's queue
wakes as soon as it is free. It orders only the writers that take it; SQLite's own lock is still what
makes a write safe, and any other writer (a staff step, a CLI command) waits for that as before.
Threads of one process share one open file (a flock is held by the open file, not the thread), so they
take a thread lock first.
"""

from __future__ import annotations

import fcntl
import os
import threading


class WriterLock:
    """The write queue of one SQLite file, for this process (one instance per Store)."""

    def __init__(self, database: str) -> None:
        self.path = f"{database}-writer.lock"
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    def acquire(self) -> None:
        """Wait for this process's turn, then for the other processes' (the GIL is released meanwhile)."""
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
