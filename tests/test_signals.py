"""The signal registry and the sliding-window counters, driven through the whole pipeline."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from itertools import count

import pytest

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.service import open_service
from clearcircle.signals.registry import SignalRegistry, SignalRegistryError, SignalSpec, load_builtin_signals

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=CST)
FLOOD = "friend-request-flood-hourly"
HOURLY = "counters.friend_requests_1h"


# --- the registry -----------------------------------------------------------------------------------------


def _spec(name: str, type_: object = int) -> SignalSpec:
    return SignalSpec(name, 1, frozenset({"post_created"}), type_, "a signal made up for the test", lambda ctx: 1)


def test_registry_refuses_a_duplicate_name():
    registry = SignalRegistry()
    first = registry.register(_spec("test.made_up"))
    with pytest.raises(SignalRegistryError, match="already registered"):
        registry.register(_spec("test.made_up", float))
    assert registry["test.made_up"] is first  # the first one still stands
    assert registry.types() == {"test.made_up": int}


def test_registry_refuses_a_duplicate_through_the_decorator():
    registry = SignalRegistry()

    @registry.signal("test.decorated", version=1, type=bool, description="made up")
    def _one(ctx):
        return True

    with pytest.raises(SignalRegistryError):

        @registry.signal("test.decorated", version=2, type=bool, description="made up again")
        def _two(ctx):
            return False


def test_builtin_registry_refuses_shadowing_a_builtin_signal():
    registry = load_builtin_signals()
    assert "counters.friend_requests_1h" in registry
    before = registry["counters.friend_requests_1h"]
    with pytest.raises(SignalRegistryError):
        registry.register(_spec("counters.friend_requests_1h"))
    assert registry["counters.friend_requests_1h"] is before


@pytest.mark.parametrize("bad_type", [dict, set, object, bytes, (int, dict)])
def test_registry_refuses_a_bad_value_type(bad_type):
    registry = SignalRegistry()
    with pytest.raises(SignalRegistryError, match="value type"):
        registry.register(_spec("test.bad_type", bad_type))
    assert "test.bad_type" not in registry


@pytest.mark.parametrize("good_type", [int, float, bool, str, list, (int, float)])
def test_registry_accepts_the_value_types(good_type):
    registry = SignalRegistry()
    registry.register(_spec("test.good_type", good_type))
    assert "test.good_type" in registry


@pytest.mark.parametrize("bad_name", ["", " test.padded", "test.with space"])
def test_registry_refuses_a_bad_name(bad_name):
    with pytest.raises(SignalRegistryError):
        SignalRegistry().register(_spec(bad_name))


# --- sliding-window counters, through the pipeline --------------------------------------------------------


@pytest.fixture
def svc(db_url, tmp_path):
    service = open_service(Settings(db_url=db_url, key_file=tmp_path / "k"))
    yield service
    service.close()


_ids = count(1)


def event(type_: str, actor: str, at: datetime, **body: object):
    return parse_event({"id": f"sig-{type_}-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(),
                        "actor": actor, "body": body})


def friend_request(actor: str, at: datetime, target: str | None = None):
    return event("friend_request", actor, at, target=target or f"stranger-{next(_ids)}")


def decide(svc, events):
    return [o.decision for o in svc.pipeline.submit(events)]


def test_31_requests_in_an_hour_fire_the_hourly_flood_rule(svc):
    decisions = decide(svc, [friend_request("flooder", T0 + timedelta(seconds=100 * i)) for i in range(31)])
    assert [d["signals"][HOURLY] for d in decisions] == list(range(1, 32))
    assert all(FLOOD not in d["rules"] for d in decisions[:30])
    last = decisions[30]
    assert FLOOD in last["rules"]
    assert last["verdict"] == "restrict"
    restricts = [a for a in last["actions"] if a["action"] == "restrict"]
    assert [(a["account"], a["detail"]["feature"]) for a in restricts] == [("flooder", "friend_request")]
    assert not any(a["action"] == "strike" for a in last["actions"])  # sociable people exist: no strike
    state = svc.store.account_state("flooder")
    assert "friend_request" in state.restrictions
    assert state.strikes == []
    # the restriction is short (about an hour), not the pack's 7-day default
    measure = state.restrictions["friend_request"]
    assert 0 < measure.until_ms - measure.since_ms <= 2 * 3_600_000
    # and it bites: the next request is removed for using a restricted feature
    nxt = decide(svc, [friend_request("flooder", T0 + timedelta(seconds=3100 + 60))])[0]
    assert "restricted-feature-use" in nxt["rules"]


def test_31_requests_over_31_hours_do_not_fire(svc):
    decisions = decide(svc, [friend_request("steady", T0 + timedelta(hours=i)) for i in range(31)])
    assert all(FLOOD not in d["rules"] for d in decisions)
    assert all(d["signals"][HOURLY] <= 2 for d in decisions)
    assert all(d["verdict"] == "allow" for d in decisions)
    # the daily window still sees the last 24 hours
    assert decisions[-1]["signals"]["counters.friend_requests_targets_1d"] >= 23
    assert svc.store.account_state("steady").restrictions == {}


def test_window_is_per_account(svc):
    events = []
    for i in range(25):
        at = T0 + timedelta(seconds=120 * i)
        events += [friend_request("alice", at), friend_request("bob", at)]
    events.append(friend_request("carol", T0 + timedelta(minutes=55)))
    decisions = decide(svc, events)
    by_actor: dict[str, list[int]] = {}
    for e, d in zip(events, decisions, strict=True):
        by_actor.setdefault(e.actor, []).append(d["signals"][HOURLY])
    assert by_actor["alice"] == list(range(1, 26))
    assert by_actor["bob"] == list(range(1, 26))
    assert by_actor["carol"] == [1]
    assert all(FLOOD not in d["rules"] for d in decisions)


def test_window_spans_batches(svc):
    for start in range(0, 30, 10):  # three separate submits, 10 each
        decide(svc, [friend_request("batched", T0 + timedelta(minutes=i)) for i in range(start, start + 10)])
    last = decide(svc, [friend_request("batched", T0 + timedelta(minutes=31))])[0]
    assert last["signals"][HOURLY] == 31
    assert FLOOD in last["rules"]


def test_out_of_order_events_count_by_occurred_at(svc):
    early = [friend_request("late-sender", T0 + timedelta(minutes=i)) for i in range(30)]
    random.Random(3).shuffle(early)
    decisions = decide(svc, early)
    assert max(d["signals"][HOURLY] for d in decisions) <= 30
    assert all(FLOOD not in d["rules"] for d in decisions)
    # an event two hours later arrives first: the 30 are outside its hour
    later = decide(svc, [friend_request("late-sender", T0 + timedelta(hours=2, minutes=30))])[0]
    assert later["signals"][HOURLY] == 1
    # then a delayed one from 10:45: its hour holds the 30 earlier ones (and not the one from 12:30)
    delayed = decide(svc, [friend_request("late-sender", T0 + timedelta(minutes=45))])[0]
    assert delayed["signals"][HOURLY] == 31
    assert FLOOD in delayed["rules"]
    # one from before them all: nothing of the 30 is in its window
    earliest = decide(svc, [friend_request("late-sender", T0 - timedelta(minutes=5))])[0]
    assert earliest["signals"][HOURLY] == 1


def test_out_of_order_within_one_batch(svc):
    times = [T0 + timedelta(minutes=i) for i in range(40)]
    events = [friend_request("shuffled", at) for at in reversed(times)]
    decisions = decide(svc, events)
    # newest first: each event's hour holds only itself of what has been seen, by occurred_at
    assert all(d["signals"][HOURLY] == 1 for d in decisions)
    # a later one sees the whole previous hour, whatever the arrival order was
    last = decide(svc, [friend_request("shuffled", T0 + timedelta(minutes=40, seconds=30))])[0]
    assert last["signals"][HOURLY] == 1 + sum(1 for at in times if at > T0 + timedelta(minutes=40, seconds=30)
                                              - timedelta(hours=1))


def report(reporter: str, target: str, at: datetime):
    return event("report", reporter, at, target=target, reason="marketing")


def test_distinct_counting_of_reporters(svc):
    decisions = decide(svc, [report("grudge", "shopkeeper", T0 + timedelta(minutes=i)) for i in range(10)])
    assert [d["signals"]["counters.reports_received_7d"] for d in decisions] == [1] * 10
    assert all(d["verdict"] == "allow" and d["rules"] == [] for d in decisions)
    more = decide(svc, [report(f"neighbour-{i}", "shopkeeper", T0 + timedelta(hours=1, minutes=i))
                        for i in range(4)])
    assert [d["signals"]["counters.reports_received_7d"] for d in more] == [2, 3, 4, 5]
    assert "report-threshold" in more[-1]["rules"]
    # reports of someone else are counted for them alone
    other = decide(svc, [report("grudge", "someone-else", T0 + timedelta(hours=2))])[0]
    assert other["signals"]["counters.reports_received_7d"] == 1


def test_distinct_reporters_window_is_seven_days(svc):
    decide(svc, [report(f"old-{i}", "veteran", T0 + timedelta(minutes=i)) for i in range(4)])
    later = decide(svc, [report("new-one", "veteran", T0 + timedelta(days=8))])[0]
    assert later["signals"]["counters.reports_received_7d"] == 1
    assert later["rules"] == []


def test_distinct_targets_versus_all_requests(svc):
    events = [friend_request("insistent", T0 + timedelta(minutes=i), target="crush") for i in range(6)]
    events.append(friend_request("insistent", T0 + timedelta(minutes=7), target="someone"))
    last = decide(svc, events)[-1]
    assert last["signals"][HOURLY] == 7
    assert last["signals"]["counters.friend_requests_targets_1d"] == 2
