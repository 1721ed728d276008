"""An account's history reads the audit log through its subject index (migration 0007), not the whole log.

Without the index, `Store.account_history` walked the log from its newest row until it had found enough rows
of the account: for a quiet account, every row (65 ms at 115,000 rows on SQLite; a minute at a hundred
million). These tests check the index exists after an upgrade, that the history's query uses it, and that an
older database gains it without losing a row.
"""

from __future__ import annotations

import orjson
import pytest
from alembic import command
from sqlalchemy import event, inspect, text

from clearcircle.config import Settings
from clearcircle.events.schemas import parse_event_json
from clearcircle.service import open_service
from clearcircle.store.db import _alembic_config
from clearcircle.store.repository import Store
from clearcircle.synthetic import generate


def _filled(db_url: str, tmp_path, n: int = 1500):  # noqa: ANN001, ANN202
    """A service over `db_url` that decided `n` generated events (in batches, as a replay does)."""
    svc = open_service(Settings(db_url=db_url, key_file=tmp_path / "k"))
    events = [parse_event_json(orjson.dumps(e)) for e in generate(n, accounts=300, seed=5)]
    for i in range(0, n, 250):
        svc.pipeline.submit(events[i:i + 250])
    return svc


def _audit_indexes(store: Store) -> dict[str, list[str]]:
    return {ix["name"]: ix["column_names"] for ix in inspect(store.engine).get_indexes("audit")}


def _history_statements(store: Store, account: str) -> list[tuple[str, object]]:
    """The SQL (and parameters) `account_history` runs against the audit table."""
    seen: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # noqa: ANN001
        if "FROM audit" in statement:
            seen.append((statement, parameters))

    engine = store.reads
    event.listen(engine, "before_cursor_execute", capture)
    try:
        store.account_history(account, 100)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return seen


def test_account_history_reads_the_audit_log_by_its_subject_index(db_url, tmp_path):
    svc = _filled(db_url, tmp_path)
    try:
        store = svc.store
        assert _audit_indexes(store)["ix_audit_subject"] == ["subject", "seq"]
        with store.engine.connect() as conn:
            quiet = conn.execute(text("SELECT subject FROM audit WHERE kind = 'state_change' GROUP BY subject "
                                      "ORDER BY count(*), subject")
                                 ).scalars().first()
            total = conn.execute(text("SELECT count(*) FROM audit")).scalar_one()
        assert total > 1000
        history = store.account_history(quiet, 100)
        assert history["changes"] or history["decisions"]  # the account's rows are found
        (statement, params), = _history_statements(store, quiet)
        with store.engine.connect() as conn:
            if store.engine.dialect.name == "sqlite":
                plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params))
            else:
                conn.exec_driver_sql("ANALYZE audit")
                plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", params))
        assert "ix_audit_subject" in plan, plan
        # a decision's audit row has its event id as subject: an account named like an event has none of them
        event_id = svc.pipeline.submit([parse_event_json(orjson.dumps(
            {**next(generate(1, seed=9)), "id": "u-named-like-an-event"}))])[0].decision["event_id"]
        assert store.account_history(event_id, 100)["changes"] == []
    finally:
        svc.close()


@pytest.mark.parametrize("prebuilt", [False, True], ids=["built-by-upgrade", "built-beforehand"])
def test_an_older_database_gains_the_index_and_keeps_every_row(sqlite_url, tmp_path, prebuilt):
    """A database at revision 0006 (before the index) upgrades in place; an index an operator built first (as
    CREATE INDEX CONCURRENTLY on a large PostgreSQL) is kept, not built twice."""
    svc = _filled(sqlite_url, tmp_path, 600)
    svc.close()
    store = Store(sqlite_url)
    try:
        with store.engine.begin() as conn:  # back to revision 0006: the index as it was before
            conn.execute(text("DROP INDEX ix_audit_subject"))
            if prebuilt:
                conn.execute(text("CREATE INDEX ix_audit_subject ON audit (subject, seq) WHERE kind <> 'decision'"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))
            before = conn.execute(text("SELECT count(*), max(seq) FROM audit")).one()
        with pytest.raises(Exception, match="0006"):
            store.check()  # the code refuses a schema that is behind it
        store.upgrade()
        store.check()
        assert _audit_indexes(store)["ix_audit_subject"] == ["subject", "seq"]
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*), max(seq) FROM audit")).one() == before
    finally:
        store.close()
    svc = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k"))
    try:
        checked, findings = svc.store.verify_audit()
        assert checked == before[0] and not findings  # the chain is intact after the upgrade
    finally:
        svc.close()


def test_the_index_is_dropped_again_on_downgrade(sqlite_url):
    store = Store(sqlite_url)
    try:
        store.upgrade()
        cfg = _alembic_config(sqlite_url)
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006")
        assert "ix_audit_subject" not in _audit_indexes(store)
    finally:
        store.close()
