"""Account classes and quotas (S8, S9) through the whole pipeline: friend caps by class, friend requests per
calendar day, pushes per calendar day or month in the platform's time zone, and decisions that name the quota
and what is left. Day and month boundaries are judged in Asia/Shanghai by the built-in pack and in UTC by a
copy of it, on the same instants."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.policy.decision import Decision
from clearcircle.policy.pack import PackError, builtin_pack_path, load_pack
from clearcircle.policy.rules import PackSettings, Tiered, lookup_order, zone
from clearcircle.service import Service, open_service
from clearcircle.signals.context import SignalContext, SignalValues
from clearcircle.signals.counters import calendar_window, period_label
from clearcircle.signals.registry import load_builtin_signals

CST = timezone(timedelta(hours=8))
_ids = count(1)


def ev(type_: str, actor: str, at: datetime, **body: Any):
    return parse_event({"id": f"q-{type_}-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(),
                        "actor": actor, "body": body})


def decide(svc: Service, *events) -> list[dict[str, Any]]:
    decisions = [o.decision for o in svc.pipeline.submit(list(events))]
    for d in decisions:
        Decision.model_validate(d)
    return decisions


def register(svc: Service, account: str, account_type: str) -> None:
    decide(svc, ev("account_registered", account, datetime(2025, 1, 1, tzinfo=CST), account_type=account_type))


def push(actor: str, at: datetime):
    return ev("message_push", actor, at, audience=5000)


def evidence(decision: dict[str, Any], rule: str) -> dict[str, Any]:
    """signal -> value of one rule's evidence."""
    return {e["signal"]: e["value"] for e in decision["evidence"] if e["rule"] == rule}


def friends_of(svc: Service, account: str) -> list[str]:
    state = svc.store.account_state(account)
    return [] if state is None else state.friends


def set_state(svc: Service, account: str, **fields: Any) -> None:
    """Write account state directly (the merchant registry's part: it sets account_class on verification).

    The audit row moves the chain head, so the pipeline drops the states it holds in memory and rereads.
    """
    with svc.store.unit() as uow:
        state = uow.touch(account)
        for name, value in fields.items():
            setattr(state, name, value)
        uow.add_audit(0, "state_change", account, '{"test": "set_state"}')


def pack_copy(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    """The built-in pack with pack.yaml text replaced (shipped packs are not edited in place)."""
    pack = tmp_path / f"pack-{next(_ids)}"
    shutil.copytree(builtin_pack_path(), pack)
    settings = pack / "pack.yaml"
    text = settings.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    settings.write_text(text, encoding="utf-8")
    return pack


UTC_PACK = ("timezone: Asia/Shanghai", "timezone: UTC")


@pytest.fixture
def services(make_db_url, tmp_path) -> Iterator[Any]:
    """Factory: a service on a fresh database of the current backend, with the built-in pack or a copy."""
    opened: list[Service] = []

    def make(pack: Path | None = None) -> Service:
        svc = open_service(Settings(db_url=make_db_url(), key_file=tmp_path / "k", pack=pack))
        opened.append(svc)
        return svc

    yield make
    for svc in opened:
        svc.close()


@pytest.fixture
def svc(services) -> Service:
    return services()


@pytest.fixture
def svc_utc(services, tmp_path) -> Service:
    return services(pack_copy(tmp_path, UTC_PACK))


# --- friends (S8) ------------------------------------------------------------------------------------------


def test_the_5000th_friend_is_allowed_and_the_5001st_refused(svc):
    register(svc, "hub", "personal")
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=CST)
    accepts = [ev("friend_request_answered", "hub", t0 + timedelta(seconds=i), target=f"fan-{i}", accepted=True)
               for i in range(5000)]
    ds = decide(svc, *accepts)  # one batch
    assert all(d["verdict"] == "allow" and d["rules"] == [] for d in ds)
    assert ds[0]["signals"]["quota.friends_left"] == 5000
    assert ds[-1]["signals"]["quota.friends_left"] == 1  # the 5000th takes the last place
    assert len(friends_of(svc, "hub")) == 5000

    later = t0 + timedelta(hours=3)
    refused = decide(svc, ev("friend_request_answered", "hub", later, target="fan-5000", accepted=True))[0]
    assert refused["verdict"] == "remove" and refused["rules"] == ["friend-limit-accept"]
    assert evidence(refused, "friend-limit-accept")["quota.friends_left"] == 0
    assert refused["actions"] == []  # a quota, not a violation: no strike
    # refused means not added, on either side
    assert len(friends_of(svc, "hub")) == 5000
    assert "hub" not in friends_of(svc, "fan-5000")

    # the other way round: someone accepting the full account's request is refused too
    other = decide(svc, ev("friend_request_answered", "newcomer", later, target="hub", accepted=True))[0]
    assert other["verdict"] == "remove" and other["rules"] == ["friend-limit-accept"]
    assert evidence(other, "friend-limit-accept")["quota.target_friends_left"] == 0
    assert "hub" not in friends_of(svc, "newcomer")
    # a full account cannot ask, either; accepting an old friend again or declining adds nobody and is fine
    ask, again, decline = decide(
        svc, ev("friend_request", "hub", later, target="someone-new"),
        ev("friend_request_answered", "hub", later, target="fan-7", accepted=True),
        ev("friend_request_answered", "hub", later, target="fan-5001", accepted=False))
    assert ask["verdict"] == "remove" and ask["rules"] == ["friend-limit"]
    assert evidence(ask, "friend-limit")["quota.friends_left"] == 0
    assert (again["verdict"], decline["verdict"]) == ("allow", "allow")
    assert len(friends_of(svc, "hub")) == 5000

    # one friend fewer (an unfriend is not an event yet: the state is written directly): room for one
    set_state(svc, "hub", friends=friends_of(svc, "hub")[1:])
    last = decide(svc, ev("friend_request_answered", "hub", later + timedelta(minutes=1), target="fan-5000",
                          accepted=True))[0]
    assert last["verdict"] == "allow" and last["signals"]["quota.friends_left"] == 1
    assert "hub" in friends_of(svc, "fan-5000")


def _friends(n: int) -> list[str]:
    return [f"old-friend-{i}" for i in range(n)]


@pytest.mark.parametrize(("account_class", "account_type", "left"), [
    (None, "personal", 0),
    (None, "service", 0),  # a public account without a class of its own: the default 5000
    ("merchant", "service", 5000),
    ("merchant", "personal", 5000),
    ("verified_brand", "subscription", 15000),
])
def test_friend_caps_by_class(sqlite_url, tmp_path, account_class, account_type, left):
    svc = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k"))
    try:
        register(svc, "shop", account_type)
        set_state(svc, "shop", account_class=account_class, friends=_friends(5000))
        d = decide(svc, ev("friend_request_answered", "shop", datetime(2026, 3, 2, tzinfo=CST),
                           target="customer", accepted=True))[0]
        assert d["signals"]["quota.friends_left"] == left
        assert d["verdict"] == ("remove" if left == 0 else "allow")
        assert len(friends_of(svc, "shop")) == (5000 if left == 0 else 5001)
    finally:
        svc.close()


def test_account_class_signal(sqlite_url, tmp_path):
    svc = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k"))
    try:
        register(svc, "plain", "service")
        register(svc, "seller", "service")
        set_state(svc, "seller", account_class="merchant")
        registry = load_builtin_signals()
        at = datetime(2026, 3, 2, tzinfo=CST)
        found = {}
        with svc.store.unit() as uow:
            for actor in ("plain", "seller", "never-registered"):
                event = ev("friend_request_answered", actor, at, target="x", accepted=True)
                values = SignalValues(registry, SignalContext(event, 0, uow, uow, svc.pack.resources))
                found[actor] = (values["account.class"], values["quota.friends_limit"])
        assert found == {"plain": ("service", 5000), "seller": ("merchant", 10000),
                         "never-registered": ("unknown", 5000)}
    finally:
        svc.close()


def test_industry_tier_follows_the_verified_merchant_record(services, tmp_path):
    """A verified merchant's first declared category is its industry; the pack's tier for it applies until the
    licence expires, then the account is back to its registered type and the default."""
    svc = services(pack_copy(tmp_path, ("    industries: {}", "    industries: {merchant: {farm_produce: 8000}}")))
    register(svc, "orchard", "personal")
    register(svc, "florist", "personal")
    applied = datetime(2027, 3, 1, tzinfo=CST)
    for account, categories in (("orchard", ["farm_produce", "fruit"]), ("florist", ["flowers"])):
        decide(svc, ev("merchant_application", account, applied, company_name="某某农业有限公司",
                       credit_code="91110000600037341L", categories=categories))
        assert svc.store.merchant_step(account, "verify", "test", licence_expires=date(2027, 6, 30)).changed

    def friends_limit(account: str, at: datetime) -> int:
        had = len(friends_of(svc, account))
        d = decide(svc, ev("friend_request_answered", account, at, target=f"c-{next(_ids)}", accepted=True))[0]
        return d["signals"]["quota.friends_left"] + had

    assert friends_limit("orchard", datetime(2027, 6, 30, 23, 0, tzinfo=CST)) == 8000
    assert svc.store.account_state("orchard").industry == "farm_produce"
    assert friends_limit("florist", datetime(2027, 6, 30, 23, 0, tzinfo=CST)) == 10000  # no tier: the class
    assert friends_limit("orchard", datetime(2027, 7, 1, 0, 30, tzinfo=CST)) == 5000  # expired: personal again
    state = svc.store.account_state("orchard")
    assert (state.account_class, state.industry) == (None, None)


def test_tiers_resolve_most_specific_first():
    friends = Tiered(default=5000, classes={"merchant": 10000, "service": None},
                     industries={"merchant": {"farm_produce": 8000}})
    assert friends.limit(lookup_order("merchant", "personal")) == 10000
    assert friends.limit(lookup_order("merchant", "personal"), "farm_produce") == 8000
    assert friends.limit(lookup_order("merchant", "personal"), "cosmetics") == 10000
    assert friends.limit(lookup_order("personal", "personal")) == 5000
    assert friends.limit(lookup_order("service", "service")) is None  # null: no limit
    assert friends.limit(lookup_order("verified_brand", "service")) is None  # falls back to its type
    assert friends.limit(lookup_order("unknown", None)) == 5000
    quotas = PackSettings(name="t").quotas
    assert quotas.push_quota(lookup_order("merchant", "service")).limit == 4  # keeps its type's push quota
    assert quotas.push_quota(lookup_order("personal", "personal")) is None


# --- friend requests per calendar day -----------------------------------------------------------------------


def test_friend_requests_per_calendar_day(services, tmp_path):
    svc = services(pack_copy(tmp_path, ("    default: 200\n", "    default: 3\n")))
    register(svc, "asker", "personal")
    day = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
    ds = decide(svc, *[ev("friend_request", "asker", day + timedelta(minutes=i), target=f"p-{i}") for i in range(5)])
    assert [d["verdict"] for d in ds] == ["allow"] * 3 + ["remove"] * 2
    assert [d["signals"]["quota.friend_requests_left_day"] for d in ds] == [3, 2, 1, 0, 0]  # refused: not counted
    assert ds[3]["rules"] == ["friend-request-quota"]
    assert evidence(ds[3], "friend-request-quota") == {"quota.friend_requests_left_day": 0}
    # 00:00 the next day in Shanghai (16:00 UTC): a new day's quota
    nxt = decide(svc, ev("friend_request", "asker", datetime(2026, 3, 3, tzinfo=CST), target="p-9"))[0]
    assert nxt["verdict"] == "allow" and nxt["signals"]["quota.friend_requests_left_day"] == 3
    # public accounts have followers, not friends
    register(svc, "news", "subscription")
    pub = decide(svc, ev("friend_request", "news", day, target="reader"))[0]
    assert pub["verdict"] == "remove" and pub["rules"] == ["friend-request-quota"]


def test_friend_request_quota_by_class(sqlite_url, tmp_path):
    svc = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k"))
    try:
        for name, account_type, cls in (("p", "personal", None), ("m", "personal", "merchant"),
                                        ("b", "service", "verified_brand")):
            register(svc, name, account_type)
            set_state(svc, name, account_class=cls)
        at = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
        ds = decide(svc, *[ev("friend_request", a, at, target="z") for a in ("p", "m", "b")])
        assert [d["signals"]["quota.friend_requests_left_day"] for d in ds] == [200, 500, 1000]
    finally:
        svc.close()


# --- pushes (S9): subscription 1 per calendar day -------------------------------------------------------------


def test_subscription_day_boundary_in_shanghai(svc, svc_utc):
    late = datetime(2026, 3, 2, 23, 59, tzinfo=CST)  # 15:59 UTC
    early = datetime(2026, 3, 3, 0, 1, tzinfo=CST)  # 16:01 UTC, the same UTC day
    for s in (svc, svc_utc):
        register(s, "daily", "subscription")
    a, b = decide(svc, push("daily", late), push("daily", early))
    assert (a["verdict"], b["verdict"]) == ("allow", "allow")
    assert b["signals"]["quota.pushes_left"] == 1
    # the same instants, judged by a platform on UTC: one day, the second push refused
    a, b = decide(svc_utc, push("daily", late), push("daily", early))
    assert (a["verdict"], b["verdict"]) == ("allow", "remove")
    assert b["rules"] == ["subscription-daily-push"]


def test_subscription_second_push_the_same_shanghai_day(svc, svc_utc):
    first = datetime(2026, 3, 2, 0, 30, tzinfo=CST)  # 2026-03-01T16:30Z
    second = datetime(2026, 3, 2, 23, 30, tzinfo=CST)  # 2026-03-02T15:30Z: another UTC day
    for s in (svc, svc_utc):
        register(s, "daily", "subscription")
    a, b = decide(svc, push("daily", first), push("daily", second))
    assert (a["verdict"], b["verdict"]) == ("allow", "remove")
    assert b["rules"] == ["subscription-daily-push"]
    assert evidence(b, "subscription-daily-push") == {"quota.pushes_per": "day", "quota.pushes_left": 0}
    assert b["signals"]["quota.pushes_left"] == 0 and b["actions"] == []
    a, b = decide(svc_utc, push("daily", first), push("daily", second))
    assert (a["verdict"], b["verdict"]) == ("allow", "allow")


def test_a_late_arriving_push_finds_the_day_used(svc):
    register(svc, "daily", "subscription")
    noon = decide(svc, push("daily", datetime(2026, 3, 2, 12, 0, tzinfo=CST)))[0]
    morning = decide(svc, push("daily", datetime(2026, 3, 2, 10, 0, tzinfo=CST)))[0]  # stamped earlier, sent later
    assert (noon["verdict"], morning["verdict"]) == ("allow", "remove")


# --- pushes (S9): service 4 per calendar month ---------------------------------------------------------------


def _march(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=CST)


def test_service_four_pushes_a_calendar_month(svc):
    register(svc, "bank", "service")
    ds = decide(svc, *[push("bank", _march(d)) for d in (1, 2, 3, 4, 31)], push("bank", _march(31, 23)))
    assert [d["verdict"] for d in ds] == ["allow"] * 4 + ["remove"] * 2
    assert [d["signals"]["quota.pushes_left"] for d in ds] == [4, 3, 2, 1, 0, 0]
    assert ds[4]["rules"] == ["service-monthly-push"]
    assert evidence(ds[4], "service-monthly-push") == {"quota.pushes_per": "month", "quota.pushes_left": 0}
    # a service account may push several times in a day: its quota is monthly
    assert "subscription-daily-push" not in {r for d in ds for r in d["rules"]}
    april = decide(svc, push("bank", datetime(2026, 4, 1, 0, 0, tzinfo=CST)))[0]
    assert april["verdict"] == "allow" and april["signals"]["quota.pushes_left"] == 4


def test_month_boundary_differs_between_shanghai_and_utc(svc, svc_utc):
    boundary = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)  # April 1st 00:30 in Shanghai, still March in UTC
    for s in (svc, svc_utc):
        register(s, "bank", "service")
        ds = decide(s, *[push("bank", _march(d)) for d in (2, 9, 16, 23)])
        assert [d["verdict"] for d in ds] == ["allow"] * 4
    shanghai = decide(svc, push("bank", boundary))[0]
    assert shanghai["verdict"] == "allow" and shanghai["signals"]["quota.pushes_left"] == 4
    utc = decide(svc_utc, push("bank", boundary))[0]
    assert utc["verdict"] == "remove" and utc["rules"] == ["service-monthly-push"]
    assert utc["signals"]["quota.pushes_left"] == 0


def test_refused_pushes_do_not_use_the_quota(svc):
    register(svc, "bank", "service")
    decide(svc, ev("moderator_action", "mod", _march(1, 8), target="bank", action="suspend", reason="check",
                   duration_days=30))
    suspended = decide(svc, push("bank", _march(2)), push("bank", _march(3)))
    assert all(d["verdict"] == "remove" and "suspended-account-activity" in d["rules"] for d in suspended)
    decide(svc, ev("moderator_action", "mod", _march(4, 8), target="bank", action="lift", reason="cleared"))
    ds = decide(svc, *[push("bank", _march(d)) for d in range(5, 11)])
    # the two suspended pushes took nothing: four still go out, then the quota refuses (and takes nothing)
    assert [d["verdict"] for d in ds] == ["allow"] * 4 + ["remove"] * 2
    assert [d["signals"]["quota.pushes_left"] for d in ds] == [4, 3, 2, 1, 0, 0]
    with svc.store.engine.connect() as conn:
        counted = conn.execute(sa.text("select count(*) from counter_hits where name = 'pushes' and key = 'bank'"))
        assert counted.scalar_one() == 4


# --- the calendar itself, and the pack's settings ----------------------------------------------------------


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_calendar_windows():
    shanghai, utc = zone("Asia/Shanghai"), zone("UTC")
    at = _ms(datetime(2026, 3, 31, 16, 30, tzinfo=UTC))
    assert calendar_window(at, shanghai, "day") == (_ms(datetime(2026, 4, 1, tzinfo=CST)),
                                                    _ms(datetime(2026, 4, 2, tzinfo=CST)))
    assert calendar_window(at, shanghai, "month") == (_ms(datetime(2026, 4, 1, tzinfo=CST)),
                                                      _ms(datetime(2026, 5, 1, tzinfo=CST)))
    assert calendar_window(at, utc, "month") == (_ms(datetime(2026, 3, 1, tzinfo=UTC)),
                                                 _ms(datetime(2026, 4, 1, tzinfo=UTC)))
    assert (period_label(at, shanghai, "month"), period_label(at, utc, "day")) == ("2026-04", "2026-03-31")
    december = _ms(datetime(2026, 12, 31, 23, 0, tzinfo=CST))
    assert calendar_window(december, shanghai, "month")[1] == _ms(datetime(2027, 1, 1, tzinfo=CST))
    assert calendar_window(december, shanghai, "day")[1] == _ms(datetime(2027, 1, 1, tzinfo=CST))
    midnight = _ms(datetime(2026, 3, 2, tzinfo=CST))
    assert calendar_window(midnight, shanghai, "day")[0] == midnight  # midnight opens its day


@pytest.mark.parametrize(("old", "new", "message"), [
    UTC_PACK[:1] + ("timezone: Asia/Atlantis", "unknown time zone 'Asia/Atlantis'"),
    ("classes: {merchant: 10000,", "classes: {merchnt: 10000,", "quotas.friends.classes.merchnt"),
    ("subscription: {limit: 1, per: day}", "subscription: {limit: 1, per: week}", "quotas.pushes.subscription.per"),
    ("    default: 5000\n", "    default: -1\n", "quotas.friends.default"),
])
def test_pack_refuses_bad_quota_settings(tmp_path, old, new, message):
    with pytest.raises(PackError) as err:
        load_pack(pack_copy(tmp_path, (old, new)))
    assert any(p.file == "pack.yaml" and message in p.message for p in err.value.problems), err.value.problems


# --- the quotas as staff see them (API) -------------------------------------------------------------------------


def test_quota_route_shows_limit_used_and_left_by_calendar_day(svc):
    from fastapi.testclient import TestClient

    from clearcircle.api.app import create_app

    register(svc, "evening-news", "subscription")
    day = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
    decide(svc, push("evening-news", day), push("evening-news", day + timedelta(hours=2)))  # 2nd refused
    _, key = svc.store.create_key("compliance", "c")
    client = TestClient(create_app(svc))
    same_day = client.get("/v1/accounts/evening-news/quotas", params={"at": (day + timedelta(hours=12)).isoformat()},
                          headers={"X-API-Key": key})
    assert same_day.status_code == 200, same_day.text
    body = same_day.json()
    assert body["class"] == "subscription" and body["timezone"] == "Asia/Shanghai"
    # the refused push used nothing: one let through, none left today
    assert body["pushes"] == {"per": "day", "period": "2026-03-02", "limit": 1, "used": 1, "left": 0}
    next_day = client.get("/v1/accounts/evening-news/quotas",
                          params={"at": datetime(2026, 3, 3, 0, 0, tzinfo=CST).isoformat()},
                          headers={"X-API-Key": key}).json()
    assert next_day["pushes"]["period"] == "2026-03-03" and next_day["pushes"]["left"] == 1
    assert client.get("/v1/accounts/nobody/quotas", headers={"X-API-Key": key}).status_code == 404
