"""The test infrastructure itself: both database backends really work and are isolated."""

from __future__ import annotations

import sqlalchemy as sa


def _roundtrip(url: str) -> list[tuple[int, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            conn.execute(
                sa.text("create table infra_probe (id integer primary key, name varchar(50) not null)")
            )
            conn.execute(
                sa.text("insert into infra_probe (id, name) values (:id, :name)"),
                [{"id": 1, "name": "alpha"}, {"id": 2, "name": "béta ✓"}],
            )
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text("select id, name from infra_probe order by id"))]
    finally:
        engine.dispose()


def test_db_url_select_create_insert_read(db_url, db_backend):
    assert db_url.startswith("sqlite:///" if db_backend == "sqlite" else "postgresql+psycopg://")
    assert _roundtrip(db_url) == [(1, "alpha"), (2, "béta ✓")]


def test_make_db_url_gives_isolated_databases(make_db_url):
    url_a, url_b = make_db_url(), make_db_url()
    assert url_a != url_b
    assert _roundtrip(url_a) == [(1, "alpha"), (2, "béta ✓")]

    # The second database is empty: the table created in the first one is not visible there.
    engine_b = sa.create_engine(url_b)
    try:
        assert "infra_probe" not in sa.inspect(engine_b).get_table_names()
        with engine_b.begin() as conn:
            conn.execute(sa.text("create table infra_probe (id integer primary key, name varchar(50))"))
            conn.execute(sa.text("insert into infra_probe values (7, 'only-b')"))
        with engine_b.connect() as conn:
            assert conn.execute(sa.text("select count(*) from infra_probe")).scalar_one() == 1
    finally:
        engine_b.dispose()
    # ...and writing to the second one left the first one untouched.
    engine_a = sa.create_engine(url_a)
    try:
        with engine_a.connect() as conn:
            assert conn.execute(sa.text("select count(*) from infra_probe")).scalar_one() == 2
    finally:
        engine_a.dispose()


def test_postgres_server_fixture(postgres_server):
    assert postgres_server.host == "127.0.0.1"
    assert 0 < postgres_server.port < 65536
    assert postgres_server.url("x") == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/x"
    engine = sa.create_engine(postgres_server.url("postgres"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("show fsync")).scalar_one() == "off"
            assert conn.execute(sa.text("show max_connections")).scalar_one() == "200"
            assert conn.execute(sa.text("show server_encoding")).scalar_one() == "UTF8"
    finally:
        engine.dispose()
