"""The one narrow boundary between detector logic and the engine that runs it.

Every detector is a sequence of SQL statements over named tables, written in the subset of SQL that both
DuckDB and Spark SQL accept (no engine-specific functions, `/` is float division in both, lists are built in
Python from sorted rows). An engine only has to: register a Parquet file under a name, materialise a query
under a name, and return the rows of a query. Loops (iterative pruning, label propagation, tree levels) are
Python around those steps, so the same detector code runs in-process on DuckDB or across a Spark cluster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Protocol


class EngineError(RuntimeError):
    """The engine cannot be started or cannot run a step (bad master URL, missing extra, bad input file)."""


class Engine(Protocol):
    name: str

    def load(self, name: str, path: Path) -> None:
        """Register a Parquet file (or folder of files) as table `name`."""

    def table(self, name: str, sql: str) -> int:
        """Materialise the query as table `name` (replacing one of that name); returns its row count."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """All rows of a query, as tuples."""

    def close(self) -> None: ...


def scalar(engine: Engine, sql: str) -> Any:
    """The single value of a one-row, one-column query."""
    return engine.rows(sql)[0][0]


class DuckDBEngine:
    """In-process DuckDB: the default. Tables live in an in-memory database (spilling to a temp folder)."""

    name = "duckdb"

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        import duckdb

        self.conn = duckdb.connect(":memory:")
        if threads:
            self.conn.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self.conn.execute(f"SET memory_limit = '{memory_limit}'")
        self.conn.execute("SET preserve_insertion_order = false")  # lets scans and joins run in parallel
        self.conn.execute("SET enable_progress_bar = false")

    def load(self, name: str, path: Path) -> None:
        source = str(Path(path) / "*.parquet") if Path(path).is_dir() else str(path)
        if not Path(path).exists():
            raise EngineError(f"no such input: {path}")
        self.conn.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{source}')")

    def table(self, name: str, sql: str) -> int:
        return int(self.conn.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}").fetchone()[0])

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql).fetchall()

    def close(self) -> None:
        self.conn.close()


class SparkEngine:
    """PySpark (the `spark` extra): local mode by default, or a cluster's master URL.

    Each materialised step is a local checkpoint, so a pruning loop does not grow an ever longer lineage.
    Shuffle partitions are kept small: the default of 200 is tuned for clusters, not for a laptop.
    """

    name = "spark"

    # small jobs on few cores: compiling generated code costs more than it saves; constraint propagation over
    # unions of checkpointed steps trips a Spark bug ("key not found") and buys nothing here
    CONF = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.constraintPropagation.enabled": "false",
    }

    def __init__(self, master: str = "local[2]", partitions: int = 4, session: Any = None,
                 conf: dict[str, str] | None = None) -> None:
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise EngineError("the spark engine needs the `spark` extra: pip install 'clearcircle[spark]'") from None
        self._own = session is None
        if session is None:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            try:
                builder = (SparkSession.builder.master(master).appName("clearcircle-detect")
                           .config("spark.sql.shuffle.partitions", str(partitions))
                           .config("spark.driver.memory", os.environ.get("CLEARCIRCLE_SPARK_DRIVER_MEMORY", "2g")))
                for key, value in {**self.CONF, **(conf or {})}.items():
                    builder = builder.config(key, value)
                session = builder.getOrCreate()
                session.sparkContext.setLogLevel("ERROR")
            except Exception as exc:  # Java missing, bad master URL
                raise EngineError(f"cannot start Spark ({master}): {exc.__class__.__name__}: {exc}") from None
        self.spark = session
        self._tables: dict[str, Any] = {}

    def load(self, name: str, path: Path) -> None:
        if not Path(path).exists():
            raise EngineError(f"no such input: {path}")
        self.spark.read.parquet(str(path)).createOrReplaceTempView(name)

    def table(self, name: str, sql: str) -> int:
        df = self.spark.sql(sql).localCheckpoint()  # eager: the step runs now, its lineage is cut
        old = self._tables.pop(name, None)
        df.createOrReplaceTempView(name)
        self._tables[name] = df
        if old is not None:
            old.unpersist()
        return df.count()  # counts the checkpointed blocks: no recomputation

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.spark.sql(sql).collect()]

    def close(self) -> None:
        for df in self._tables.values():
            df.unpersist()
        self._tables.clear()
        if self._own:
            self.spark.stop()


def open_engine(kind: str = "duckdb", master: str | None = None) -> Engine:
    """An engine by name: `duckdb` (default, in-process) or `spark` (local[2] unless a master URL is given)."""
    if kind == "duckdb":
        return DuckDBEngine()
    if kind == "spark":
        return SparkEngine(master or "local[2]")
    raise EngineError(f"unknown engine {kind!r}: use duckdb or spark")
