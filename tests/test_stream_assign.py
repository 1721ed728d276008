"""Who owns which partition (clearcircle/stream/assign.py) and what stays in a partition stream: the plan
evens out the workers' backlog, moves as little as it can, keeps every partition with exactly one live worker;
on a real Redis, two workers split two hot partitions that an even share by count gave to one of them; and
an owner trims its partitions of what was decided, never of what is pending or unread; `clearcircle
stream-status` shows owners, plan, backlog and pending entries, and names what needs a person."""

from __future__ import annotations

import random
import time
from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from clearcircle.cli.main import app
from clearcircle.events.schemas import parse_event_json
from clearcircle.stream.assign import balance, even_share
from clearcircle.stream.base import Batch, Entry, route
from clearcircle.stream.redis_streams import GROUP, RedisSource, StreamAddress, connect, open_partitions, publish
from clearcircle.synthetic import generate

UNIT = 500


def _loads(plan: dict[int, str], backlog: dict[int, int], unit: int = UNIT) -> Counter[str]:
    load: Counter[str] = Counter()
    for i, w in plan.items():
        load[w] += backlog.get(i, 0) + unit
    return load


def test_with_no_backlog_the_share_is_even_by_count() -> None:
    plan = balance(["b", "a", "c"], {}, {}, 16, UNIT)
    assert sorted(plan) == list(range(16))
    assert sorted(Counter(plan.values()).values()) == [5, 5, 6]
    assert even_share(["b", "a"], 4) == {0: "a", 1: "b", 2: "a", 3: "b"}


def test_two_hot_partitions_of_one_worker_are_split() -> None:
    """i % 2 gives partitions 0 and 2 to the same worker; by backlog they go to different ones."""
    backlog = {0: 5_000, 2: 4_000, 1: 100, 3: 50}
    previous = even_share(["a", "b"], 4)
    plan = balance(["a", "b"], backlog, previous, 4, UNIT)
    assert plan[0] != plan[2]
    load = _loads(plan, backlog)
    assert max(load.values()) - min(load.values()) < max(_loads(previous, backlog).values())


def test_the_generated_mix_is_shared_closer_to_half() -> None:
    """The benchmark's 20,000 events on 16 partitions: i % 2 gives one worker 52.9%; the plan gets nearer to
    half (a partition cannot be split, so not exactly half)."""
    homes = Counter(route(parse_event_json(orjson.dumps(e)), 16)[0] for e in generate(20_000))
    backlog = {i: homes[i] for i in range(16)}
    total = sum(backlog.values())
    even = max(sum(n for i, n in backlog.items() if i % 2 == k) for k in range(2)) / total
    plan = balance(["w1", "w2"], backlog, even_share(["w1", "w2"], 16), 16, UNIT)
    planned = max(sum(n for i, n in backlog.items() if plan[i] == w) for w in ("w1", "w2")) / total
    assert even > 0.525 and planned < 0.52


def test_small_changes_in_backlog_move_nothing() -> None:
    backlog = {0: 3_000, 1: 2_900, 2: 100, 3: 150}
    plan = balance(["a", "b"], backlog, {}, 4, UNIT)
    nudged = {i: n + (200 if i % 2 else -150) for i, n in backlog.items()}
    assert balance(["a", "b"], nudged, plan, 4, UNIT) == plan


def test_a_dead_workers_partitions_go_to_the_live_ones_and_the_rest_stay() -> None:
    previous = even_share(["a", "b", "c"], 9)
    plan = balance(["a", "c"], {}, previous, 9, UNIT)
    assert set(plan.values()) == {"a", "c"}
    assert all(plan[i] == w for i, w in previous.items() if w != "b")  # 3 + 3 kept, b's 3 shared 2 / 1
    assert sorted(Counter(plan.values()).values()) == [4, 5]


def test_thousands_of_partitions_on_one_worker_are_spread_over_a_hundred() -> None:
    """The largest stream (4,096 partitions) all on one worker when 99 join: every worker ends with a share,
    and the busiest is within one of its own partitions (plus a unit) of the least busy."""
    rnd = random.Random(7)
    workers = [f"w{k:03d}" for k in range(100)]
    backlog = {i: rnd.randint(0, 5_000) for i in range(4_096)}
    plan = balance(workers, backlog, dict.fromkeys(range(4_096), "w000"), 4_096, UNIT)
    load = _loads(plan, backlog)
    heavy = max(workers, key=lambda w: load[w])
    lightest = min(load[w] for w in workers)
    smallest = min(backlog[i] + UNIT for i, w in plan.items() if w == heavy)
    assert len(set(plan.values())) == 100 and load[heavy] - lightest < smallest + UNIT


@settings(max_examples=300, deadline=None)
@given(workers=st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=5, unique=True),
       partitions=st.integers(1, 40), data=st.data())
def test_every_partition_has_one_live_owner_and_no_worthwhile_move_is_left(workers: list[str], partitions: int,
                                                                         data: st.DataObject) -> None:
    backlog = data.draw(st.dictionaries(st.integers(0, partitions - 1), st.integers(0, 20_000)))
    previous = data.draw(st.dictionaries(st.integers(-2, partitions + 2), st.sampled_from("abcdefgxyz")))
    plan = balance(workers, backlog, previous, partitions, UNIT)
    assert sorted(plan) == list(range(partitions)) and set(plan.values()) <= set(workers)
    assert balance(list(reversed(workers)), backlog, previous, partitions, UNIT) == plan  # same on every worker
    assert balance(workers, backlog, plan, partitions, UNIT) == plan  # a fixed point: the next beat moves nothing
    load = _loads(plan, backlog)
    heavy = max(workers, key=lambda w: load[w])
    light = min(workers, key=lambda w: load[w])
    for i, w in plan.items():  # no partition left whose move would lower the busier one by a unit
        weight = backlog.get(i, 0) + UNIT
        if w == heavy and weight < load[heavy] - load[light]:
            assert load[heavy] - max(load[heavy] - weight, load[light] + weight) < UNIT


# -- on Redis ------------------------------------------------------------------------------------------------
def _address(redis_url: str, name: str) -> StreamAddress:
    return StreamAddress.parse(redis_url.rsplit("/", 1)[0] + "/" + name)


def _settle(*sources: RedisSource, rounds: int = 4) -> None:
    for _ in range(rounds):
        time.sleep(0.15)
        for source in sources:
            source._rebalance()  # noqa: SLF001 - what a fetch does between batches, without reading


def test_two_workers_split_the_hot_partitions_an_even_share_gave_one(redis_url: str) -> None:
    address = _address(redis_url, "hotsplit")
    client = connect(address)
    count = open_partitions(client, address, 4)
    publish(client, address, [(p, b"x") for p in (0, 2) for _ in range(1_500)] + [(1, b"y"), (3, b"z")])
    a = RedisSource(client, address, count, lease_ms=600, consumer="a")
    b = RedisSource(client, address, count, lease_ms=600, consumer="b")
    try:
        _settle(a, b)
        _settle(a, b)
        assert a.owned | b.owned == {0, 1, 2, 3} and not a.owned & b.owned
        assert ({0, 2} & a.owned) and ({0, 2} & b.owned)  # by i % 2 both would be a's
        plan = orjson.loads(client.get("hotsplit:plan"))
        assert plan["made_by"] == "a" and plan["workers"] == ["a", "b"]
        assert {i for i, w in enumerate(plan["owners"]) if w == "b"} == b.owned
    finally:
        a.close()
        b.close()
        client.close()


def test_an_idle_worker_takes_a_partition_handed_to_it_without_waiting_out_its_block(redis_url: str) -> None:
    """b has nothing to read and waits in fetch with a 20 s block; once the plan hands it one of a's two
    partitions that got busy (a lets it go between its batches), b reads it within a few heartbeats, not after 20 s."""
    address = _address(redis_url, "handover")
    client = connect(address)
    count = open_partitions(client, address, 4)
    a = RedisSource(client, address, count, lease_ms=3_000, consumer="a")
    b = RedisSource(client, address, count, lease_ms=3_000, consumer="b")
    try:
        _settle(a, b)
        hot = set(a.owned)  # no backlog yet: two each
        assert len(hot) == 2 and b.owned == {0, 1, 2, 3} - hot
        publish(client, address, [(p, b"x") for p in sorted(hot) for _ in range(3_000)])
        started = time.monotonic()
        got: list[int] = []
        while not got and time.monotonic() - started < 15:
            a.fetch(1, 10)  # a between its (tiny) batches: follows the plan, lets a partition go
            got = [batch.partition for batch in b.fetch(100, 20_000)]
        assert got and set(got) <= hot and time.monotonic() - started < 6
    finally:
        a.close()
        b.close()
        client.close()


def test_an_owner_trims_what_was_decided_and_keeps_what_is_pending_or_unread(redis_url: str) -> None:
    address = _address(redis_url, "trim")
    client = connect(address)
    count = open_partitions(client, address, 1)
    publish(client, address, [(0, b"e%d" % n) for n in range(2_000)])
    source = RedisSource(client, address, count, lease_ms=5_000, consumer="one")
    try:
        read = [e for _ in range(3) for b in source.fetch(400, 10) for e in b.entries]  # 1,200 read
        assert len(read) == 1_200
        source.ack([_batch(read[:800])])  # the first 800 decided; 400 pending, 800 unread
        source._beat()  # noqa: SLF001 - the heartbeat trims; run one now
        kept = client.xrange("trim:p0", "-", "+")
        kept_data = [fields[b"e"] for _id, fields in kept]
        assert kept_data[-1_200:] == [b"e%d" % n for n in range(800, 2_000)]  # pending and unread all kept
        assert len(kept) <= 1_300  # of 2,000: the decided 800 gone but for at most a node (~ trims whole nodes)
        pending = client.xpending("trim:p0", GROUP)
        assert pending["pending"] == 400
        source.ack([_batch(read[800:])])
        rest = [e for _ in range(3) for b in source.fetch(400, 10) for e in b.entries]
        source.ack([_batch(rest)])
        source._beat()  # noqa: SLF001
        assert client.xlen("trim:p0") <= 101  # at most a node, the last one decided kept as the group's place
        publish(client, address, [(0, b"late")])
        assert [e.data for b in source.fetch(10, 10) for e in b.entries] == [b"late"]
    finally:
        source.close()
        client.close()


def _batch(entries: list[Entry]) -> Batch:
    return Batch(0, list(entries))


@pytest.mark.parametrize("ordering", ["exact"])
def test_an_exact_stream_is_trimmed_too(redis_url: str, ordering: str) -> None:
    address = _address(redis_url, "trimx")
    client = connect(address)
    count = open_partitions(client, address, 1, ordering)
    publish(client, address, [(0, b"e%d" % n, ()) for n in range(500)])
    source = RedisSource(client, address, count, lease_ms=5_000, consumer="one")
    try:
        got = [b for _ in range(5) for b in source.fetch(250, 10)]
        source.ack(got)
        assert sum(len(b.entries) for b in got) == 500
        source._beat()  # noqa: SLF001
        assert client.xlen("trimx:p0") <= 101
    finally:
        source.close()
        client.close()


# -- clearcircle stream-status -------------------------------------------------------------------------------
def _status(url: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(app, ["stream-status", "--stream", url, "--json"])
    return result.exit_code, orjson.loads(result.stdout) if result.exit_code == 0 else {}, result.output


def test_stream_status_shows_owners_plan_backlog_and_what_needs_a_person(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    address = _address(redis_url, "status")
    client = connect(address)
    count = open_partitions(client, address, 4)
    publish(client, address, [(p, b"x") for p in (0, 2) for _ in range(300)] + [(1, b"y")])
    a = RedisSource(client, address, count, lease_ms=3_000, consumer="a")
    b = RedisSource(client, address, count, lease_ms=3_000, consumer="b")
    try:
        _settle(a, b)
        a.fetch(50, 10)  # 50 of a's entries delivered, not acknowledged
        code, doc, _out = _status(f"{base}/status")
        assert code == 0 and doc["name"] == "status" and doc["ordering"] == "account"
        parts = {p["partition"]: p for p in doc["partitions"]}
        assert {i: p["owner"] for i, p in parts.items()} == {i: "a" if i in a.owned else "b" for i in range(4)}
        assert all(p["planned"] == p["owner"] for p in parts.values()) and doc["plan_by"] == "a"
        assert [parts[i]["backlog"] for i in range(4)] == [300, 1, 300, 0]  # pending ones are still to decide
        assert sum(p["pending"] for p in parts.values()) == 50
        assert [(w["id"], sorted(w["partitions"])) for w in doc["workers"]] == [("a", sorted(a.owned)),
                                                                               ("b", sorted(b.owned))]
        assert doc["problems"] == []
        client.xadd("status:dead", {"entry": "1-0", "reason": "not an event"})
    finally:
        a.close()
        b.close()
    code, doc, _out = _status(f"{base}/status")  # both left: their partitions have no owner
    assert code == 0 and doc["workers"] == [] and doc["plan_by"] is None
    assert any(p.startswith("partition 0: 300 event(s) to decide and no worker owns it") for p in doc["problems"])
    assert any("1 entry set aside" in p for p in doc["problems"])
    table = CliRunner().invoke(app, ["stream-status", "--stream", f"{base}/status"])
    assert table.exit_code == 0 and "no worker owns it" in table.output and "partition" in table.output
    client.close()


@pytest.mark.parametrize(("url", "message"), [("redis://127.0.0.1:1/x", "cannot reach Redis"),
                                              ("http://nowhere/x", "expected redis://HOST:PORT/NAME")])
def test_stream_status_of_a_bad_or_unreachable_stream_is_a_message(url: str, message: str) -> None:
    code, _doc, out = _status(url)
    assert code == 2 and message in out and "Traceback" not in out


def test_stream_status_of_an_unknown_stream_says_so(redis_url: str) -> None:
    code, _doc, out = _status(redis_url.rsplit("/", 1)[0] + "/never-used")
    assert code == 2 and "no stream named 'never-used'" in " ".join(out.split())
