"""Counters in Redis (clearcircle/store/redis_counters.py) against the SQL default, on a real redis-server.

The counter behaviour tests run once per backend ("sql": the counter_hits table of a SQLite file; "redis": the
same database for everything else, hits in Redis); then what only Redis has to get right: no hits from a
batch that rolled back, retried writes counted once, failed writes kept for the next batch, trimming, shared
counters between two workers, and a replay whose decisions equal the SQL one's.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import sqlalchemy as sa
from typer.testing import CliRunner

from clearcircle.cli.main import app
from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.service import Service, open_service
from clearcircle.signals.counters import MAX_WINDOW_MS
from clearcircle.store import tables as t
from clearcircle.store.db import StoreError
from clearcircle.store.redis_counters import RETAIN_MS, RedisHits
from clearcircle.synthetic import generate

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=CST)
HOURLY = "counters.friend_requests_1h"
TARGETS = "counters.friend_requests_targets_1d"
FLOOD = "friend-request-flood-hourly"
_ids = count(1)


def ev(type_: str, actor: str, at: datetime, **body: Any):
    return parse_event({"id": f"rc-{type_}-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(),
                        "actor": actor, "body": body})


def request(actor: str, at: datetime, target: str | None = None):
    return ev("friend_request", actor, at, target=target or f"stranger-{next(_ids)}")


def decide(svc: Service, events: list) -> list[dict[str, Any]]:
    return [o.decision for o in svc.pipeline.submit(events)]


@pytest.fixture(params=["sql", "redis"])
def backend(request: pytest.FixtureRequest) -> str | None:
    """None: hits in the database (the default); else the Redis URL."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


def _open(sqlite_url: str, tmp_path: Path, redis_url: str | None) -> Service:
    return open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k", redis_url=redis_url))


@pytest.fixture
def svc(sqlite_url: str, tmp_path: Path, backend: str | None) -> Iterator[Service]:
    service = _open(sqlite_url, tmp_path, backend)
    yield service
    service.close()


def stored_hits(svc: Service) -> int:
    with svc.store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t.counter_hits)).scalar_one()


# --- the same counter behaviour on both backends ---------------------------------------------------------------


def test_hourly_window_spans_batches_and_fires_the_flood_rule(svc):
    counts = []
    for start in range(0, 30, 10):
        counts += [d["signals"][HOURLY] for d in decide(svc, [request("batched", T0 + timedelta(minutes=i))
                                                              for i in range(start, start + 10)])]
    assert counts == list(range(1, 31))
    last = decide(svc, [request("batched", T0 + timedelta(minutes=31))])[0]
    assert last["signals"][HOURLY] == 31
    assert FLOOD in last["rules"]
    # hits live in exactly one place
    assert (stored_hits(svc) > 0) == (svc.store.redis is None)


def test_counts_survive_a_restart(sqlite_url, tmp_path, backend):
    first = _open(sqlite_url, tmp_path, backend)
    decide(first, [request("restarted", T0 + timedelta(minutes=i)) for i in range(20)])
    first.close()
    second = _open(sqlite_url, tmp_path, backend)  # a new process: nothing in memory
    try:
        nxt = decide(second, [request("restarted", T0 + timedelta(minutes=30))])[0]
        assert nxt["signals"][HOURLY] == 21
        # and the counters the faces read (quota report) agree with the pipeline's
        at = int((T0 + timedelta(minutes=30)).timestamp() * 1000)
        assert second.store.count_hits("restarted", "friend_requests", at - 3_600_000, at) == 21
    finally:
        second.close()


def test_out_of_order_events_count_by_occurred_at(svc):
    decide(svc, [request("late", T0 + timedelta(minutes=i)) for i in reversed(range(30))])
    later = decide(svc, [request("late", T0 + timedelta(hours=2, minutes=30))])[0]
    assert later["signals"][HOURLY] == 1
    delayed = decide(svc, [request("late", T0 + timedelta(minutes=45))])[0]
    assert delayed["signals"][HOURLY] == 31  # the 30 earlier ones, not the one from 12:30


def test_distinct_counts_count_members(svc):
    events = [request("insistent", T0 + timedelta(minutes=i), target="crush") for i in range(6)]
    events.append(request("insistent", T0 + timedelta(minutes=7), target="someone"))
    last = decide(svc, events)[-1]
    assert (last["signals"][HOURLY], last["signals"][TARGETS]) == (7, 2)


def test_calendar_month_push_quota(sqlite_url, tmp_path, backend):
    first = _open(sqlite_url, tmp_path, backend)
    decide(first, [ev("account_registered", "svc-acct", datetime(2025, 1, 1, tzinfo=CST), account_type="service")])
    decide(first, [ev("message_push", "svc-acct", datetime(2026, 3, d, 9, tzinfo=CST), audience=100)
                   for d in (2, 9, 16)])
    first.close()
    svc = _open(sqlite_url, tmp_path, backend)  # the month's quota is read back from the hits store
    try:
        fourth, fifth = decide(svc, [ev("message_push", "svc-acct", datetime(2026, 3, d, 9, tzinfo=CST), audience=1)
                                     for d in (23, 30)])
        assert fourth["verdict"] == "allow"
        assert "service-monthly-push" in fifth["rules"] and fifth["verdict"] == "remove"
        april = decide(svc, [ev("message_push", "svc-acct", datetime(2026, 4, 1, 9, tzinfo=CST), audience=1)])[0]
        assert april["verdict"] == "allow"  # a new calendar month; the refused push used nothing
    finally:
        svc.close()


# --- what the Redis side must get right -------------------------------------------------------------------------


def test_a_rolled_back_batch_leaves_no_hits(svc):
    at = int(T0.timestamp() * 1000)
    with pytest.raises(RuntimeError, match="boom"):
        with svc.store.unit() as uow:
            uow.record_hit("doomed", "friend_requests", at, "ev-doomed", "x")
            uow.flush(at)  # written inside the transaction (SQL) or staged (Redis) ...
            raise RuntimeError("boom")  # ... and the transaction rolls back
    assert svc.store.count_hits("doomed", "friend_requests", at - 1, at) == 0
    # the pipeline does not see it either
    nxt = decide(svc, [request("doomed", T0 + timedelta(minutes=1))])[0]
    assert nxt["signals"][HOURLY] == 1


def test_a_batch_the_database_refuses_counts_nothing(svc):
    """A real failure mid-commit (a trigger refuses one event row): the whole batch rolls back, its hits too."""
    with svc.store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.id = 'rc-poison' "
                             "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END")
    decide(svc, [request("victim", T0 + timedelta(minutes=i)) for i in range(3)])
    batch = [request("victim", T0 + timedelta(minutes=10 + i)) for i in range(5)]
    batch.append(parse_event({"id": "rc-poison", "type": "friend_request", "occurred_at": T0.isoformat(),
                              "actor": "victim", "body": {"target": "someone"}}))
    with pytest.raises(sa.exc.DBAPIError, match="poisoned row"):
        svc.pipeline.submit(batch)
    at = int((T0 + timedelta(minutes=30)).timestamp() * 1000)
    assert svc.store.count_hits("victim", "friend_requests", at - 3_600_000, at) == 3
    nxt = decide(svc, [request("victim", T0 + timedelta(minutes=30))])[0]
    assert nxt["signals"][HOURLY] == 4  # the 3 committed and itself, none of the refused batch


def test_rewriting_a_hit_counts_it_once(redis_url):
    hits = RedisHits(redis_url)
    rows = [{"key": "acct", "name": "friend_requests", "event_id": f"e{i}", "at_ms": 1000 + i, "member": "t"}
            for i in range(5)]
    hits.committed(rows)
    hits.committed(rows)  # a retried write
    assert hits.count("acct", "friend_requests", 0, 10_000) == 5
    assert hits.count("acct", "friend_requests", 0, 10_000, distinct=True) == 1
    assert hits.count("acct", "posts", 0, 10_000) == 0
    assert hits.count("acct", "friend_requests", 1001, 1003) == 2  # the window is (since, until]
    hits.close()


def test_a_failed_write_is_kept_and_sent_with_the_next_batch(redis_url):
    hits = RedisHits(redis_url)
    hits.client.set(hits.prefix + "blocked", "not a sorted set")  # ZADD on it fails with WRONGTYPE
    row = {"key": "blocked", "name": "posts", "event_id": "e1", "at_ms": 5, "member": "e1"}
    other = {"key": "fine", "name": "posts", "event_id": "e2", "at_ms": 5, "member": "e2"}
    hits.committed([row, other])
    assert hits.pending == 2
    hits.client.delete(hits.prefix + "blocked")
    later = {"key": "fine", "name": "posts", "event_id": "e3", "at_ms": 6, "member": "e3"}
    hits.committed([later])
    assert hits.pending == 0
    assert hits.count("blocked", "posts", 0, 10) == 1
    assert hits.count("fine", "posts", 0, 10) == 2  # e2 sent twice, counted once
    hits.close()


def test_old_hits_are_trimmed_beyond_the_longest_window(redis_url):
    assert RETAIN_MS > MAX_WINDOW_MS
    hits = RedisHits(redis_url)
    old = {"key": "a", "name": "posts", "event_id": "old", "at_ms": 1_000, "member": "old"}
    recent = {"key": "a", "name": "posts", "event_id": "new", "at_ms": 1_000 + RETAIN_MS + 1, "member": "new"}
    hits.committed([old])
    hits.committed([recent])
    assert [m for _k, _n, _at, m in hits.load(None, ["a"], 0)] == ["new"]
    assert 0 < hits.client.pttl(hits.prefix + "a") <= RETAIN_MS
    hits.close()


def test_two_workers_share_counters(sqlite_url, tmp_path, redis_url):
    one, two = _open(sqlite_url, tmp_path, redis_url), _open(sqlite_url, tmp_path, redis_url)
    try:
        counts = []
        for i in range(12):
            worker = (one, two)[i % 2]
            counts += [d["signals"][HOURLY] for d in decide(worker, [request("shared", T0 + timedelta(minutes=i))])]
        assert counts == list(range(1, 13))
    finally:
        one.close()
        two.close()


def test_unreachable_redis_is_a_clear_error(sqlite_url, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(StoreError, match="cannot use Redis"):
        _open(sqlite_url, tmp_path, f"redis://127.0.0.1:{port}/0")
    result = CliRunner().invoke(app, ["bench", "--events", "1000"],
                                env={"CLEARCIRCLE_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert result.exit_code == 2
    assert "cannot use Redis" in result.output
    assert "Traceback" not in result.output


def test_replay_decisions_equal_with_sql_and_redis_counters(tmp_path, redis_url):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(4000, accounts=300, seed=11)))
    outputs = []
    for name, env in (("sql", {}), ("redis", {"CLEARCIRCLE_REDIS_URL": redis_url})):
        out = tmp_path / f"{name}.jsonl"
        result = CliRunner().invoke(
            app, ["replay", str(events), "--out", str(out), "--db", f"sqlite:///{tmp_path / name}.db",
                  "--batch", "250"],
            env={"CLEARCIRCLE_HASH_KEY": "same-key", "CLEARCIRCLE_REDIS_URL": "", **env})
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes().splitlines())
    sql, red = outputs
    assert len(sql) == 4000
    assert sql == red
    decisions = [orjson.loads(line) for line in sql]
    # the counters did decide things here: rules that read them fired
    assert any(any(k.startswith("counters.") and v for k, v in d["signals"].items()) for d in decisions)
    assert {d["verdict"] for d in decisions} - {"allow"}
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() > 0  # the Redis run did keep its hits there
