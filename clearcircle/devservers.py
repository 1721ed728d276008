"""Throw-away PostgreSQL and Redis servers on 127.0.0.1 and a free port, from Debian's packages.

Used by the test fixtures (tests/conftest.py) and by `clearcircle bench --stream` when no server URLs are
given, so a benchmark or a test never needs a system service: each server lives in a temporary directory,
without durability (fsync off, no persistence: it is thrown away), and is stopped and removed on exit.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"


class ServerUnavailable(RuntimeError):
    """The server's programs are not installed (or cannot be run as needed here)."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (another process may still take it before we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_pg_bindir() -> Path | None:
    """Debian's /usr/lib/postgresql/<highest version>/bin holding initdb and pg_ctl, or None."""
    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/bin$", path)
        return tuple(int(p) for p in m.group(1).split(".") if p) if m else ()

    candidates = [
        d
        for d in glob.glob("/usr/lib/postgresql/*/bin")
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK)
    ]
    if not candidates:
        return None
    return Path(max(candidates, key=version))


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str = PG_USER
    datadir: Path | None = field(default=None, repr=False)
    sockdir: Path | None = field(default=None, repr=False)
    start_seconds: float = 0.0

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq conninfo (for psycopg directly, without SQLAlchemy)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"


class PgCluster:
    """Owns the temp dir and the postmaster; ``stop()`` is idempotent (called from finally and atexit).
    As root, PostgreSQL refuses to run, so its programs run as the `postgres` system user."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="clearcircle-pg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "postgres.log"
        self.started = False
        self.removed = False
        if self.as_root:
            import pwd

            pw = pwd.getpwnam(PG_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run_as_pg(["mkdir", "-p", str(self.sockdir)])

    def _run_as_pg(self, argv: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = (["runuser", "-u", PG_USER, "--", *argv]) if self.as_root else argv
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        proc = subprocess.run(cmd, cwd=self.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stdout}\n{self._log()}")
        return proc

    def _log(self) -> str:
        try:
            return "--- postgres.log ---\n" + self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def initdb(self) -> None:
        self._run_as_pg([str(self.bindir / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", PG_USER,
                         "--no-sync", "-E", "UTF8", "--locale=C"])

    def start(self, port: int) -> None:
        opts = (
            f"-p {port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self.started = True  # even a failed start may leave a postmaster behind; stop() copes
        self._run_as_pg([str(self.bindir / "pg_ctl"), "-w", "-t", "60", "-D", str(self.datadir), "-l",
                         str(self.logfile), "-o", opts, "start"])

    def stop_server(self) -> None:
        if self.started:
            self.started = False
            if (self.datadir / "postmaster.pid").exists():
                self._run_as_pg([str(self.bindir / "pg_ctl"), "-w", "-D", str(self.datadir), "stop", "-m",
                                 "immediate"], check=False)

    def stop(self) -> None:
        self.stop_server()
        if not self.removed:
            self.removed = True
            shutil.rmtree(self.root, ignore_errors=True)


def postgres_problem() -> str | None:
    """Why a throw-away PostgreSQL cannot be started here, or None if it can."""
    if find_pg_bindir() is None:
        return "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; Debian package postgresql)"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root but there is no {PG_USER!r} system user to run PostgreSQL as"
    return None


@contextmanager
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster with trust auth on 127.0.0.1; stopped and removed on exit."""
    problem = postgres_problem()
    bindir = find_pg_bindir()
    if problem or bindir is None:
        raise ServerUnavailable(problem or "PostgreSQL is not installed")
    t0 = time.monotonic()
    cluster = PgCluster(bindir)
    atexit.register(cluster.stop)
    try:
        cluster.initdb()
        port = 0
        for attempt in range(3):  # the free port could be grabbed by someone else before postgres binds it
            port = free_port()
            try:
                cluster.start(port)
                break
            except RuntimeError:
                cluster.stop_server()
                if attempt == 2:
                    raise
        yield PostgresServer(host="127.0.0.1", port=port, datadir=cluster.datadir, sockdir=cluster.sockdir,
                             start_seconds=time.monotonic() - t0)
    finally:
        cluster.stop()


def redis_binary() -> str | None:
    return shutil.which("redis-server", path=f"{os.environ.get('PATH', '')}:/usr/bin:/usr/sbin")


@contextmanager
def redis_server(workdir: Path | None = None) -> Iterator[str]:
    """Debian's redis-server on 127.0.0.1 and a free port, without persistence; yields its URL (database 0)
    and stops it on exit."""
    import redis

    binary = redis_binary()
    if binary is None:
        raise ServerUnavailable("redis-server is not installed (Debian package redis-server)")
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="clearcircle-redis-")) if workdir is None else workdir
    proc: subprocess.Popen | None = None
    try:
        for attempt in range(3):  # the free port could be taken before redis binds it
            port = free_port()
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(work), "--daemonize", "no", "--logfile", str(work / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            else:
                proc.kill()
                proc.wait()
                if attempt == 2:
                    log = (work / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server did not start:\n{log}")
                continue
            break
        yield url
    finally:
        if proc is not None:
            stop_process(proc, 10)
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
