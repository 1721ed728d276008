"""Driver.among / among_pairs: the set look-ups the unit of work reads accounts, identifier links and merchant
records with.

They build dialect-specific SQL (arrays on PostgreSQL, IN lists on SQLite), so each is checked on both stores
for exact results, and on SQLite for using the primary key instead of scanning the table (a row-value
`IN (VALUES ...)` scanned every identifier link on each batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from clearcircle.config import Settings
from clearcircle.merchants import registry as merchant_registry
from clearcircle.merchants.registry import MerchantRecord
from clearcircle.service import open_service
from clearcircle.store.driver import Driver

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
                                     indirect=True)

LINKS = [(kind, f"h{i}", f"acct-{i % 7}") for i in range(60) for kind in ("phone", "device", "payment")]


@pytest.fixture
def conn(make_db_url: Any, tmp_path: Path) -> Iterator[Connection]:
    service = open_service(Settings(db_url=make_db_url(), key_file=tmp_path / "k"))
    with service.store.engine.begin() as c:
        Driver(c).many("INSERT INTO identity_links (kind, value_hash, account, linked_ms) VALUES (?, ?, ?, 0)",
                       LINKS)
    with service.store.engine.connect() as c:
        yield c
    service.close()


@pytest.mark.parametrize("pairs", [
    [("phone", "h3"), ("device", "h3"), ("payment", "h59"), ("phone", "nope"), ("fax", "h3")],
    [("device", "h10")],
    [],
])
def test_among_pairs_finds_exactly_the_rows_of_the_pairs(conn: Connection, pairs: list[tuple[str, str]]) -> None:
    driver = Driver(conn)
    where, params = driver.among_pairs("kind", "value_hash", pairs)
    got = sorted(driver.rows(f"SELECT kind, value_hash, account FROM identity_links WHERE {where}", params))
    assert got == sorted(row for row in LINKS if (row[0], row[1]) in set(pairs))


def test_among_finds_exactly_the_rows_of_the_values(conn: Connection) -> None:
    driver = Driver(conn)
    where, params = driver.among("account", ["acct-2", "acct-5", "nobody"])
    got = sorted(driver.rows(f"SELECT kind, value_hash FROM identity_links WHERE {where}", params))
    assert got == sorted((k, h) for k, h, a in LINKS if a in ("acct-2", "acct-5"))


def test_sqlite_searches_the_key_for_pairs_instead_of_scanning(conn: Connection, db_backend: str) -> None:
    if db_backend != "sqlite":
        pytest.skip("query plans differ; PostgreSQL's is its planner's choice by table size")
    driver = Driver(conn)
    pairs = [("phone", "h1"), ("device", "h2"), ("phone", "h4")]
    where, params = driver.among_pairs("kind", "value_hash", pairs)
    plan = " | ".join(str(r[-1]) for r in driver.rows(
        f"EXPLAIN QUERY PLAN SELECT kind, value_hash, account FROM identity_links WHERE {where}", params))
    assert "SEARCH identity_links" in plan and "SCAN identity_links" not in plan, plan


def test_merchant_records_load_back_equal_through_the_driver(conn: Connection) -> None:
    """The pipeline reads the batch's merchant records through `among` on every submit."""
    saved = [MerchantRecord(f"shop-{i}", f"Shop {i} Co., Ltd.", "91350100M000100Y43", "JY13501000000001" if i else None,
                            ("food", "cosmetics")[: i + 1], ("verified", "pending", "revoked")[i],
                            "licence withdrawn" if i == 2 else None, date(2027, 1, 31) if i == 0 else None,
                            f"app-{i}", 1_000 + i, 2_000 + i) for i in range(3)]
    with conn.begin():
        for record in saved:
            merchant_registry.save(conn, record, existed=False)
    got = merchant_registry.load(conn, ["shop-0", "shop-2", "shop-2", "nobody"])
    assert got == {"shop-0": saved[0], "shop-2": saved[2]}
