"""Friend-request spam (S7) through the whole pipeline: a seller adding hundreds of strangers who rarely accept
is slowed down, then verified by a person, then restricted from adding; a sociable person adding friends of
friends who accept is left alone. Runs with counters in the database and in Redis."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.policy.decision import Decision
from clearcircle.service import Service, open_service
from clearcircle.signals.context import SignalContext, SignalValues

CST = timezone(timedelta(hours=8))
DAY0 = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
SLOW, VERIFY, RESTRICT = "friend-spam-slow-down", "friend-spam-verify", "friend-spam-restrict-adds"
SPAM_RULES = {SLOW, VERIFY, RESTRICT, "friend-request-flood-hourly", "friend-request-flood-daily"}
_ids = count(1)


def ev(type_: str, actor: str, at: datetime, **body: Any):
    return parse_event({"id": f"fs-{type_}-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(),
                        "actor": actor, "body": body})


def ask(actor: str, target: str, at: datetime):
    return ev("friend_request", actor, at, target=target)


def answer(person: str, requester: str, at: datetime, accepted: bool = True):
    return ev("friend_request_answered", person, at, target=requester, accepted=accepted)


def register(account: str, at: datetime):
    return ev("account_registered", account, at, account_type="personal")


@pytest.fixture(params=["sql", "redis"])
def svc(request: pytest.FixtureRequest, sqlite_url: str, tmp_path: Path) -> Iterator[Service]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    service = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k", redis_url=redis_url))
    yield service
    service.close()


def run(svc: Service, events: list) -> dict[str, dict[str, Any]]:
    """Decide the events in time order, a day a batch; event id -> decision."""
    events = sorted(events, key=lambda e: e.occurred_at)
    out: dict[str, dict[str, Any]] = {}
    by_day: dict[Any, list] = {}
    for e in events:
        by_day.setdefault(e.occurred_at.date(), []).append(e)
    for day in sorted(by_day):
        batch = by_day[day]
        for e, outcome in zip(batch, svc.pipeline.submit(batch), strict=True):
            out[e.id] = outcome.decision
    for d in out.values():
        Decision.model_validate(d)
    return out


def test_a_stranger_spammer_is_slowed_then_verified_then_restricted(svc):
    rng = random.Random(5)
    run(svc, [register("seller", DAY0 - timedelta(days=3))])
    requests, decisions = [], {}
    for day in range(7):  # 60 strangers a day, one every 10 minutes
        todays = [ask("seller", f"stranger-{day}-{i}", DAY0 + timedelta(days=day, minutes=10 * i)) for i in range(60)]
        decisions |= run(svc, todays)
        requests += todays
        # few of those the requests reached accept, hours later (a refused request reaches nobody)
        reached = [e for e in todays if decisions[e.id]["verdict"] in ("allow", "review")]
        run(svc, [answer(e.body.target, "seller", e.occurred_at + timedelta(hours=3))
                  for e in reached if rng.random() < 0.05])
    asked = [decisions[e.id] for e in requests]

    def first(rule: str) -> int:
        return next(i for i, d in enumerate(asked) if rule in d["rules"])

    # graduated: slowed on day 1, a person verifies later, adds restricted last
    assert first(SLOW) < 60
    assert first(SLOW) < first(VERIFY) < first(RESTRICT)
    # slowing down works: about 30 strangers a day get through, not 60
    let_through_day1 = sum(d["verdict"] == "allow" for d in asked[:60])
    assert 25 <= let_through_day1 <= 35
    # the verification is a review case, the restriction 7 days of no adds with one strike; never a ban
    state = svc.store.account_state("seller")
    assert state.restrictions["friend_request"].rule == RESTRICT  # the 1-hour pauses never shorten it
    restrict_decision = asked[first(RESTRICT)]
    restricts = [a for a in restrict_decision["actions"] if a["action"] == "restrict" and a["rule"] == RESTRICT]
    assert restricts and restricts[0]["detail"]["feature"] == "friend_request"
    assert restricts[0]["detail"]["until_ms"] - int(requests[first(RESTRICT)].occurred_at.timestamp() * 1000) \
        == 7 * 86_400_000
    assert len(state.strikes) == 1
    assert state.ban is None and state.suspension is None
    assert not any(d["verdict"] in ("ban", "suspend") for d in asked)
    verify_decision = asked[first(VERIFY)]
    assert any(a["action"] == "case_opened" for a in verify_decision["actions"])
    # once restricted, requests are refused without more strikes or more restrictions
    later = asked[first(RESTRICT) + 1:]
    assert later and all(d["verdict"] != "allow" and RESTRICT not in d["rules"] for d in later)
    # the account's reasons are in the decision: the rule and the values it judged
    evidence = {e["signal"]: e["value"] for e in restrict_decision["evidence"] if e["rule"] == RESTRICT}
    assert evidence["friend_requests.one_way_7d"] >= 100
    assert evidence["friend_requests.acceptance_ratio_7d"] < 0.15
    assert evidence["friend_requests.stranger_share_7d"] >= 0.8


def test_a_sociable_person_adding_friends_of_friends_is_left_alone(svc):
    rng = random.Random(9)
    setup = [register("sociable", DAY0 - timedelta(days=30))]
    circles: dict[str, list[str]] = {}
    for f in range(5):  # five friends, each with thirty friends of their own
        friend = f"friend-{f}"
        setup += [ask("sociable", friend, DAY0 - timedelta(days=20, hours=f)),
                  answer(friend, "sociable", DAY0 - timedelta(days=20, hours=f, minutes=-5))]
        circles[friend] = [f"fof-{f}-{j}" for j in range(30)]
        for j, fof in enumerate(circles[friend]):  # they asked the friend, who accepted
            setup += [ask(fof, friend, DAY0 - timedelta(days=10, minutes=j)),
                      answer(friend, fof, DAY0 - timedelta(days=10, minutes=j - 1))]
    run(svc, setup)
    # then 30 friends of friends a day for five days, one every 15 minutes; most accept within hours
    requests, answers = [], []
    people = [p for circle in circles.values() for p in circle]
    for n, person in enumerate(people):
        at = DAY0 + timedelta(days=n // 30, minutes=15 * (n % 30))
        requests.append(ask("sociable", person, at))
        if rng.random() < 0.8:
            answers.append(answer(person, "sociable", at + timedelta(hours=2)))
    decisions = run(svc, requests + answers)
    asked = [decisions[e.id] for e in requests]
    assert len(asked) == 150
    assert all(d["verdict"] == "allow" and not SPAM_RULES & set(d["rules"]) for d in asked)
    assert all(d["signals"]["friend_requests.strangers_1d"] == 0 for d in asked)
    state = svc.store.account_state("sociable")
    assert state.restrictions == {} and state.strikes == [] and not state.reviews
    assert len(state.friends) > 100


def test_strangers_are_judged_when_asked(svc):
    # a and b share friend m; c shares none with a
    run(svc, [ask("a", "m", DAY0), answer("m", "a", DAY0 + timedelta(minutes=1)),
              ask("b", "m", DAY0), answer("m", "b", DAY0 + timedelta(minutes=1))])
    to_b, to_c = ask("a", "b", DAY0 + timedelta(hours=1)), ask("a", "c", DAY0 + timedelta(hours=1, minutes=1))
    decisions = run(svc, [to_b, to_c])
    # a asked m as a stranger an hour ago; b (through m) is no stranger, c is
    assert decisions[to_b.id]["signals"]["friend_requests.strangers_1d"] == 1
    assert decisions[to_c.id]["signals"]["friend_requests.strangers_1d"] == 2


def signals_of(svc: Service, event, names: tuple[str, ...]) -> dict[str, Any]:
    """Signal values for an event that is not submitted (nothing is recorded for it)."""
    with svc.store.unit() as uow:
        uow.prefetch([], {event.actor, event.body.target}, {event.actor}, 0)
        ctx = SignalContext(event, int(event.occurred_at.timestamp() * 1000), uow, uow, svc.pack.resources)
        values = SignalValues(svc.pipeline.registry, ctx)
        return {name: values[f"friend_requests.{name}"] for name in names}


def test_acceptance_ratio_and_one_way_adds(svc):
    run(svc, [register("asker", DAY0 - timedelta(days=1))])
    requests = [ask("asker", f"p{i}", DAY0 + timedelta(minutes=i)) for i in range(20)]
    # 16 answer: the first 10 accept, 6 refuse; 4 never answer
    answers = [answer(f"p{i}", "asker", DAY0 + timedelta(hours=1, minutes=i), accepted=i < 10) for i in range(16)]
    run(svc, requests + answers)
    probe = ask("asker", "newcomer", DAY0 + timedelta(hours=2))
    got = signals_of(svc, probe, ("asked_7d", "accepted_7d", "acceptance_ratio_7d", "one_way_7d", "strangers_1d",
                                  "stranger_share_1d", "mutual_friends"))
    # 20 asked + this one; 10 accepted (refusals do not count); all strangers when asked (no friends then)
    assert got == {"asked_7d": 21, "accepted_7d": 10, "acceptance_ratio_7d": 10 / 21, "one_way_7d": 11,
                   "strangers_1d": 21, "stranger_share_1d": 1.0, "mutual_friends": 0}
    # a friend of one of the ten is no stranger any more
    run(svc, [ask("pal", "p3", DAY0 + timedelta(hours=3)), answer("p3", "pal", DAY0 + timedelta(hours=3, minutes=1))])
    pal = ask("asker", "pal", DAY0 + timedelta(hours=4))
    got = signals_of(svc, pal, ("mutual_friends", "strangers_1d", "acceptance_ratio_7d"))
    assert got == {"mutual_friends": 1, "strangers_1d": 20, "acceptance_ratio_7d": 10 / 21}


def test_too_few_asked_for_a_ratio(svc):
    run(svc, [ask("quiet", f"q{i}", DAY0 + timedelta(minutes=i)) for i in range(5)])
    got = signals_of(svc, ask("quiet", "q-next", DAY0 + timedelta(hours=1)), ("acceptance_ratio_7d", "asked_7d"))
    assert got == {"acceptance_ratio_7d": None, "asked_7d": 6}
