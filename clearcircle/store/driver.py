"""Hot-path statements straight through the DB-API cursor of a SQLAlchemy connection.

Why: a unit of work runs about a dozen small statements (lock the audit head, look up decided ids, load
account states and counter windows, insert events, decisions, hits and audit rows). Through SQLAlchemy Core
each one costs 100-300 µs of Python (cache keys, compilation lookup, result metadata) — for one event that
is most of the cost of deciding it. The statements here are fixed text with `?` placeholders, run on the
same connection and so in the same transaction; everything else in the store stays SQLAlchemy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

_T = TypeVar("_T")


@functools.cache
def _for_driver(sql: str, mark: str) -> str:
    return sql if mark == "?" else sql.replace("?", mark)


def marks(n: int) -> str:
    """`?, ?, ?` for an IN list or a VALUES row of n values."""
    return ", ".join("?" * n)


class Driver:
    """`rows`, `one`, `run`, `many` on the connection's DB-API cursor; SQL written with `?` placeholders
    (turned into `%s` for psycopg; PostgreSQL-only SQL may use psycopg's `%b`, a parameter sent in binary) and
    no `?` anywhere else. Driver errors are raised as SQLAlchemy's
    (IntegrityError, OperationalError, ...), like every other statement of the store."""

    def __init__(self, conn: Connection) -> None:
        self.dbapi = conn.connection.dbapi_connection
        self.mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        self.postgresql = conn.dialect.name == "postgresql"
        self.error: type[Exception] = conn.dialect.loaded_dbapi.Error

    def _cursor(self, sql: str, params: Any, work: Callable[[Any, str], _T]) -> _T:
        cur = self.dbapi.cursor()
        try:
            return work(cur, _for_driver(sql, self.mark))
        except self.error as exc:
            raise DBAPIError.instance(sql, params, exc, self.error) from exc
        finally:
            cur.close()

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """(`column` is one of the values, its parameters). PostgreSQL: `= ANY(?)` with one array, so the
        statement text is the same for any number of values: psycopg converts it once and the server prepares
        it (a varying `IN (?, ?, ...)` is parsed and planned anew on both sides every time). SQLite: IN."""
        if self.postgresql:
            return f"{column} = ANY(%b::text[])", [list(values)]  # %b: binary, no per-value escaping
        return f"{column} IN ({marks(len(values))})", list(values)

    def among_pairs(self, first: str, second: str, pairs: Sequence[tuple[Any, Any]]) -> tuple[str, list[Any]]:
        """(`(first, second)` is one of the pairs, its parameters): two arrays zipped on PostgreSQL (one
        statement text for any number of pairs, as in `among`). SQLite: `first = ? AND second IN (...)` for
        each distinct first, ORed: its planner searches an index on (first, second) for that form, while it
        scans the whole table for a row-value `IN (VALUES ...)` (200,000 links: 1.5 ms against 141 ms)."""
        if self.postgresql:
            return (f"({first}, {second}) IN (SELECT * FROM unnest(%b::text[], %b::text[]))",
                    [[a for a, _b in pairs], [b for _a, b in pairs]])
        seconds: dict[Any, list[Any]] = {}
        for a, b in pairs:
            seconds.setdefault(a, []).append(b)
        if not seconds:
            return "0 = 1", []
        where = " OR ".join(f"({first} = ? AND {second} IN ({marks(len(bs))}))" for bs in seconds.values())
        return f"({where})", [v for a, bs in seconds.items() for v in (a, *bs)]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        args = tuple(params)
        return self._cursor(sql, args, lambda cur, text: cur.execute(text, args).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        args = tuple(params)

        def work(cur: Any, text: str) -> int:
            cur.execute(text, args)
            return cur.rowcount

        return self._cursor(sql, args, work)

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        self._cursor(sql, batch, lambda cur, text: cur.executemany(text, batch))

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Plain rows into a table: PostgreSQL's COPY (one stream, no per-row statement: several times less
        client CPU than executemany for a batch's events, decisions, hits and audit rows), else executemany."""
        if not self.postgresql:
            self.many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(len(columns))})", rows)
            return
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"

        def work(cur: Any, text: str) -> None:
            with cur.copy(text) as copy:
                for row in rows:
                    copy.write_row(row)

        self._cursor(sql, (), work)
