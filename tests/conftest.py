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

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clearcircle import devservers
from clearcircle.devservers import PG_USER, PostgresServer, postgres_problem

__all__ = ["PG_USER", "PostgresServer"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(reason: str) -> None:
    """Skip locally, but never silently skip the PostgreSQL tests under CI."""
    if _in_ci():
        pytest.fail(f"PostgreSQL tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


# the servers themselves live in clearcircle/devservers.py (also used by `clearcircle bench --stream`)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    problem = postgres_problem()
    if problem:
        _unavailable(problem + "; run scripts/test")
    with devservers.postgres() as server:
        yield server


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
    if devservers.redis_binary() is None:
        if _in_ci():
            pytest.fail("Redis tests cannot run under CI=true: redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed (Debian package redis-server); run scripts/test")
    with devservers.redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The test Redis server's URL, its database emptied first."""
    import redis

    with redis.Redis.from_url(redis_server) as client:
        client.flushdb()
    return redis_server
