"""Engine construction and migrations: one URL decides SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from clearcircle.store.driver import Driver

_MIGRATIONS = Path(__file__).parent / "migrations"


class StoreError(RuntimeError):
    """The store cannot be used as asked (bad URL, schema not migrated, unreachable server)."""


_READ_ONLY = "clearcircle_read_only"


def reads(engine: Engine) -> Engine:
    """The same engine for read-only work: on SQLite its transactions do not take the write lock, so an API
    key check or a console page never queues behind (or holds up) the pipeline's write transaction."""
    return engine.execution_options(**{_READ_ONLY: True})


def is_read_only(conn: Connection) -> bool:
    """A connection of `reads`."""
    return bool(conn.get_execution_options().get(_READ_ONLY))


def sqlite_file(url: str) -> str | None:
    """The file of an SQLite URL; None for another database, an in-memory one or a URL that does not parse."""
    try:
        parsed = make_url(url)
    except Exception:  # make_engine reports it
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or "mode=memory" in str(parsed):
        return None
    return database


def make_engine(url: str, wal_autocheckpoint: int = 1000) -> Engine:
    """An engine for the URL; SQLite gets WAL, a busy timeout and NORMAL sync, which WAL makes safe.
    `wal_autocheckpoint`: the log's length in pages at which a commit copies it into the database itself
    (SQLite's default, 1,000, unless a store.checkpoint thread does that)."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise StoreError(f"invalid database URL {url!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            dbapi_conn.isolation_level = None  # SQLAlchemy's `begin` event below issues BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # 16 MiB page cache a connection: the hot index pages stay in memory (the OS caches the rest of the
            # file); larger, every pooled connection's cache grows with the database and a server's memory with it
            cur.execute("PRAGMA cache_size=-16384")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:  # noqa: ANN001
            # writers take the write lock up front so two of them queue instead of failing mid-transaction;
            # readers (see `reads`) take a snapshot and never wait for a writer (WAL)
            # through the driver's cursor (errors raised as SQLAlchemy's): SQLAlchemy's execution path cost more
            # than the BEGIN itself, once a transaction (docs/hardening.md, Load)
            Driver(conn).run("BEGIN" if is_read_only(conn) else "BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise StoreError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://")


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    cfg = _alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def check_current(engine: Engine) -> None:
    """Refuse to run on a database whose schema is behind the code, with the command that fixes it."""
    head = ScriptDirectory.from_config(_alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise StoreError(f"database schema is at {current or 'nothing'}, code needs {head}: "
                         "run `clearcircle db upgrade`")
