"""Shared test fixtures: database URLs for SQLite and a throw-away PostgreSQL server.

Fixtures
--------
``postgres_server`` (session)
    Starts a private PostgreSQL cluster (initdb + pg_ctl from /usr/lib/postgresql/<highest>/bin) on a free
    TCP port of 127.0.0.1 with trust auth, and stops/removes it at the end of the session. If PostgreSQL is
    not installed the dependent tests are skipped -- except under ``CI=true``, where they fail loudly.
``db_backend`` (function, parametrized)
    ``"sqlite"`` / ``"postgresql"`` (the latter marked ``postgres``).
``make_db_url`` (function)
    Factory: each call returns the URL of a fresh, empty database of the current backend.
``db_url`` (function)
    One URL from ``make_db_url`` -- a test taking it runs once per backend.
``sqlite_url`` (function)
    URL of a fresh SQLite file only (for tests that need just the embedded default).
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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_USER = "postgres"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(reason: str) -> None:
    """Skip locally, but never silently skip the PostgreSQL tests under CI."""
    if _in_ci():
        pytest.fail(f"PostgreSQL tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _find_pg_bindir() -> Path | None:
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class _PgCluster:
    """Owns the temp dir and the postmaster; ``stop()`` is idempotent (called from finally and atexit)."""

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

    def _run_as_pg(
        self, argv: list[str], check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        cmd = (["runuser", "-u", PG_USER, "--", *argv]) if self.as_root else argv
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        proc = subprocess.run(
            cmd,
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stdout}\n{self._log()}"
            )
        return proc

    def _log(self) -> str:
        try:
            return "--- postgres.log ---\n" + self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def initdb(self) -> None:
        self._run_as_pg(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-A",
                "trust",
                "-U",
                PG_USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )

    def start(self, port: int) -> None:
        opts = (
            f"-p {port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self.started = True  # even a failed start may leave a postmaster behind; stop() copes
        self._run_as_pg(
            [
                str(self.bindir / "pg_ctl"),
                "-w",
                "-t",
                "60",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-o",
                opts,
                "start",
            ]
        )

    def stop_server(self) -> None:
        if self.started:
            self.started = False
            if (self.datadir / "postmaster.pid").exists():
                self._run_as_pg(
                    [str(self.bindir / "pg_ctl"), "-w", "-D", str(self.datadir), "stop", "-m", "immediate"],
                    check=False,
                )

    def stop(self) -> None:
        self.stop_server()
        if not self.removed:
            self.removed = True
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _find_pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); run scripts/test")
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            _unavailable(f"running as root but there is no {PG_USER!r} system user to run PostgreSQL as")

    t0 = time.monotonic()
    cluster = _PgCluster(bindir)
    atexit.register(cluster.stop)
    try:
        cluster.initdb()
        port = None
        for attempt in range(3):  # the free port could be grabbed by someone else before postgres binds it
            port = _free_port()
            try:
                cluster.start(port)
                break
            except RuntimeError:
                cluster.stop_server()
                if attempt == 2:
                    raise
        server = PostgresServer(
            host="127.0.0.1",
            port=port,
            datadir=cluster.datadir,
            sockdir=cluster.sockdir,
            start_seconds=time.monotonic() - t0,
        )
        yield server
    finally:
        cluster.stop()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_db_url(
    db_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Factory of fresh, isolated, empty databases of the current backend; each call -> a new URL."""
    created: list[str] = []

    if db_backend == "sqlite":

        def make() -> str:
            name = "cc.db" if not created else f"cc{len(created) + 1}.db"
            created.append(name)
            return f"sqlite:///{tmp_path / name}"

        yield make
        return

    # Only PostgreSQL-parametrized tests start (or need) the server.
    server: PostgresServer = request.getfixturevalue("postgres_server")
    import psycopg
    from psycopg import sql

    def make() -> str:
        name = f"cc_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return server.url(name)

    try:
        yield make
    finally:
        if created:
            with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
                for name in created:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                    )


@pytest.fixture
def db_url(make_db_url: Callable[[], str]) -> str:
    """A fresh database URL; tests using it run once per backend (sqlite, postgresql)."""
    return make_db_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file (the embedded default backend only)."""
    return f"sqlite:///{tmp_path / 'cc.db'}"


# --- Redis (counters in production, clearcircle/store/redis_counters.py) ------------------------------------------
# ``redis_server`` (session) starts Debian's redis-server on 127.0.0.1 and a free port, without persistence, and
# stops it at the end; ``redis_url`` (function) is its URL with database 0 emptied first. Skipped when
# redis-server is not installed -- except under ``CI=true``, where that fails like the PostgreSQL fixture.


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server", path=f"{os.environ.get('PATH', '')}:/usr/bin:/usr/sbin")
    if binary is None:
        if _in_ci():
            pytest.fail("Redis tests cannot run under CI=true: redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed (Debian package redis-server); run scripts/test")
    import redis

    workdir = tmp_path_factory.mktemp("redis")
    for attempt in range(3):  # the free port could be taken before redis binds it
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--daemonize", "no", "--logfile", str(workdir / "redis.log")],
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
                log = (workdir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start:\n{log}")
            continue
        break
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The test Redis server's URL, its database emptied first."""
    import redis

    with redis.Redis.from_url(redis_server) as client:
        client.flushdb()
    return redis_server
