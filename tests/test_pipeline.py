"""The real-time path end to end, on SQLite and PostgreSQL: events in, decisions, state, cases and audit out."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from itertools import count
from typing import Any

import pytest
import sqlalchemy as sa

from clearcircle.config import Settings
from clearcircle.events import EventError, parse_event
from clearcircle.policy.decision import Decision
from clearcircle.policy.pack import builtin_pack_path
from clearcircle.policy.verdicts import VERDICTS
from clearcircle.service import open_service

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
ORDINARY = "周末和朋友去爬山，风景很美"
ZW = "\u200b"  # zero-width space


@pytest.fixture
def svc(db_url, tmp_path):
    service = open_service(Settings(db_url=db_url, key_file=tmp_path / "k"))
    yield service
    service.close()


_ids = count(1)


def ev(type_: str, actor: str, at: datetime = T0, **body: Any):
    return parse_event({"id": f"pl-{type_}-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(),
                        "actor": actor, "body": body})


def post(actor: str, text: str, at: datetime = T0, surface: str = "moments", **extra: Any):
    return ev("post_created", actor, at, surface=surface, text=text, **extra)


def decide(svc, *events) -> list[dict[str, Any]]:
    return [o.decision for o in svc.pipeline.submit(list(events))]


def rows(svc, sql: str, **params: Any) -> list[Any]:
    with svc.store.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def field_text(event, path: str) -> str:
    """The body field an evidence item points at: `body.text`, `body.links.0.landing_text`, ..."""
    value: Any = event
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


def assert_spans_point_into_the_text(event, decision: dict[str, Any]) -> list[dict[str, Any]]:
    spans = [e for e in decision["evidence"] if e.get("span") is not None]
    for item in spans:
        a, b = item["span"]
        original = field_text(event, item["field"])
        assert 0 <= a < b <= len(original), item
        assert original[a:b] == item["text"], item
    return spans


def no_measures(state) -> None:
    assert state is None or (state.restrictions == {} and state.suspension is None and state.ban is None
                             and state.reach_limit is None and state.strikes == [] and state.labels == {})


# --- the decision --------------------------------------------------------------------------------------


def test_a_decision_per_event_in_order(svc):
    at = [T0 + timedelta(minutes=i) for i in range(20)]
    events = [
        ev("account_registered", "shape-a", at[0], account_type="personal", phone="+86 138 0000 0000"),
        ev("account_registered", "shape-pub", at[1], account_type="subscription"),
        post("shape-a", ORDINARY, at[2]),
        post("shape-a", "诚招代理，发展下线", at[3], surface="comment"),
        ev("share", "shape-a", at[4], item="https://example.com/x", destination="moments"),
        ev("like", "shape-a", at[5], item="pl-post-1"),
        ev("friend_request", "shape-a", at[6], target="shape-b", message="你好，我是同学"),
        ev("friend_request_answered", "shape-b", at[7], target="shape-a", accepted=True),
        ev("follow", "shape-a", at[8], target="shape-pub"),
        ev("unfollow", "shape-a", at[9], target="shape-pub"),
        ev("referral", "shape-a", at[10], referee="shape-c", reward=5, fee_paid=0),
        ev("message_push", "shape-pub", at[11], audience=1200),
        ev("report", "shape-b", at[12], target="shape-pub", reason="other", note="推送太多"),
        ev("buyer_complaint", "shape-b", at[13], seller="shape-a", reason="not_delivered", amount=30.5),
        ev("merchant_application", "shape-pub", at[14], company_name="某某食品有限公司",
           credit_code="91350100M000100Y43", categories=["food"]),
        ev("moderator_action", "mod-1", at[15], target="shape-a", action="label", reason="test label"),
    ]
    outcomes = svc.pipeline.submit(events)
    assert len(outcomes) == len(events)
    for event, outcome in zip(events, outcomes, strict=True):
        d = outcome.decision
        assert outcome.duplicate is False
        assert d["event_id"] == event.id
        assert d["verdict"] in VERDICTS
        assert isinstance(d["rules"], list) and isinstance(d["shadow_rules"], list)
        assert isinstance(d["signals"], dict) and isinstance(d["evidence"], list)
        assert d["pack_version"] == svc.pack.version and d["pack_version"].startswith("sha256:")
        Decision.model_validate(d)  # the wire model of EVENTS.md
        assert svc.store.decision(event.id) == json.loads(json.dumps(d))  # stored as returned
        for item in d["evidence"]:
            assert item["rule"] in d["rules"] + d["shadow_rules"]
    verdicts = {e.id: o.decision["verdict"] for e, o in zip(events, outcomes, strict=True)}
    assert verdicts[events[2].id] == "allow"
    assert verdicts[events[3].id] == "review"
    assert verdicts[events[-1].id] == "label"
    # the raw phone number never reaches the store
    stored = " ".join(r[0] for r in rows(svc, "select payload from events"))
    assert "138 0000 0000" not in stored and "+86" not in stored
    assert len(rows(svc, "select id from events")) == len(events)


def test_the_same_id_twice_is_one_event(svc):
    first = svc.pipeline.submit([post("dup-a", "无抵押贷款，当天放款")])[0]
    again = svc.pipeline.submit([parse_event(ev_wire(first.decision["event_id"], "dup-a", "无抵押贷款，当天放款"))])[0]
    assert first.duplicate is False and again.duplicate is True
    assert json.loads(json.dumps(again.decision)) == json.loads(json.dumps(first.decision))
    assert len(rows(svc, "select id from events")) == 1
    assert len(svc.store.account_state("dup-a").strikes) == 1  # applied once


def ev_wire(event_id: str, actor: str, text: str) -> dict[str, Any]:
    return {"id": event_id, "type": "post_created", "occurred_at": T0.isoformat(), "actor": actor,
            "body": {"surface": "moments", "text": text}}


# --- content rules -------------------------------------------------------------------------------------

CONTENT_CASES = [
    # rule, surface, a text written for the test, expected verdict
    ("induced-share-text", "moments", "邀请好友拆红包，转发朋友圈送好礼", "limit_reach"),
    ("counterfeit-sale-text", "moments", "莆田鞋，支持验货，微信下单", "remove"),
    ("mlm-recruiting-text", "article", "躺赚项目，拉人头，直推奖百分之十", "review"),
    ("sensitive-words", "comment", "无抵押贷款，网贷秒批", "remove"),
    ("moments-contact-solicitation", "moments", "新款连衣裙上新，扫码加好友", "label"),
]


@pytest.mark.parametrize(("rule_id", "surface", "text", "verdict"), CONTENT_CASES, ids=[c[0] for c in CONTENT_CASES])
def test_content_rule_fires_on_its_example_only(svc, rule_id, surface, text, verdict):
    event = post(f"writer-{rule_id}", text, surface=surface)
    d = decide(svc, event)[0]
    assert d["rules"] == [rule_id]
    assert d["verdict"] == verdict
    spans = assert_spans_point_into_the_text(event, d)
    assert spans and all(item["rule"] == rule_id for item in spans)
    # an ordinary sentence from another account, same surface: nothing fires
    calm = decide(svc, post(f"calm-{rule_id}", ORDINARY, surface=surface))[0]
    assert calm["verdict"] == "allow" and calm["rules"] == [] and calm["shadow_rules"] == []
    assert calm["evidence"] == []


def test_action_effects_of_content_rules(svc):
    ds = decide(svc, post("fx-share", "邀请好友拆红包，转发朋友圈送好礼"),
                post("fx-fake", "莆田鞋，支持验货，微信下单"),
                post("fx-label", "新款连衣裙上新，扫码加好友"))
    assert [d["verdict"] for d in ds] == ["limit_reach", "remove", "label"]
    assert svc.store.account_state("fx-share").reach_limit is not None
    assert len(svc.store.account_state("fx-fake").strikes) == 1
    label_state = svc.store.account_state("fx-label")
    assert "commercial" in label_state.labels and label_state.strikes == []


def test_contact_solicitation_only_on_moments(svc):
    d = decide(svc, post("article-seller", "新款连衣裙上新，扫码加好友", surface="article"))[0]
    assert "moments-contact-solicitation" not in d["rules"]
    assert d["verdict"] == "allow"


def test_mlm_review_opens_a_case(svc):
    event = post("recruiter", "躺赚项目，拉人头，直推奖百分之十", surface="article")
    d = decide(svc, event)[0]
    assert d["verdict"] == "review"
    cases = rows(svc, "select account, event_id, rules, status, severity from cases")
    assert len(cases) == 1
    account, event_id, rules_json, status, severity = cases[0]
    assert (account, event_id, status) == ("recruiter", event.id, "open")
    assert json.loads(rules_json) == ["mlm-recruiting-text"]
    assert severity == svc.pack.rule("mlm-recruiting-text").spec.severity
    no_measures(svc.store.account_state("recruiter"))  # a review alone restricts nothing


OBFUSCATED = [
    ("induced-share-text", ZW.join("转发朋友圈送") + "好礼", ZW),
    ("counterfeit-sale-text", "高" + ZW + "仿名表，支" + ZW + "持" + ZW + "验" + ZW + "货，下" + ZW + "单", ZW),
    ("sensitive-words", "包 治 百 病，药-到-病-除", " "),
    ("counterfeit-sale-text", "ＷＸ：abc123 原单 尾单", "Ｗ"),
    ("mlm-recruiting-text", "发\u2060展\ufeff下\u200c线", "\u2060"),
]


@pytest.mark.parametrize(("rule_id", "text", "marker"), OBFUSCATED,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(OBFUSCATED)])
def test_evidence_spans_survive_obfuscation(svc, rule_id, text, marker):
    event = post(f"hider-{next(_ids)}", text, surface="comment")
    d = decide(svc, event)[0]
    assert rule_id in d["rules"]
    spans = assert_spans_point_into_the_text(event, d)
    # the evidence is the user's own text, obfuscation included, not our normalised rewrite
    assert any(marker in item["text"] for item in spans)


def test_evidence_span_in_landing_text(svc):
    landing = "活动说明：" + ZW.join("分享到朋友圈即可") + "领取红包"
    event = post("linker", "看看这个活动", links=[{"url": "https://example.com/a"},
                                            {"url": "https://example.com/b", "landing_text": landing}])
    d = decide(svc, event)[0]
    assert "induced-share-text" in d["rules"]
    spans = assert_spans_point_into_the_text(event, d)
    assert {item["field"] for item in spans} == {"body.links.1.landing_text"}


# --- shadow mode ---------------------------------------------------------------------------------------
# follow-burst (S3, graph detector pending) is the built-in pack's shadow rule: more than 100 follows in an hour.


def _follow_burst(actor: str) -> list:
    return [ev("follow", actor, T0 + timedelta(seconds=i), target=f"{actor}-pa-{i}") for i in range(101)]


def test_shadow_rule_is_reported_not_acted_on(svc):
    d = decide(svc, *_follow_burst("brusher"))[-1]
    assert "follow-burst" in d["shadow_rules"]
    assert "follow-burst" not in d["rules"]
    assert d["rules"] == [] and d["verdict"] == "allow"
    assert d["actions"] == []
    no_measures(svc.store.account_state("brusher"))
    assert rows(svc, "select id from cases") == []
    assert rows(svc, "select seq from audit where kind = 'state_change'") == []


def test_the_same_rule_in_enforce_mode_would_act(db_url, tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(builtin_pack_path(), pack)
    rules = pack / "rules" / "brushing_mlm.yaml"
    text = rules.read_text(encoding="utf-8")
    assert text.count("mode: shadow") == 1
    rules.write_text(text.replace("mode: shadow", "mode: enforce"), encoding="utf-8")
    service = open_service(Settings(db_url=db_url, key_file=tmp_path / "k", pack=pack))
    try:
        d = decide(service, *_follow_burst("brusher-2"))[-1]
    finally:
        service.close()
    assert d["rules"] == ["follow-burst"] and d["shadow_rules"] == []
    assert d["verdict"] == "review"


# --- reports -------------------------------------------------------------------------------------------


def test_mass_reporting_never_restricts_the_innocent(svc):
    decide(svc, ev("account_registered", "innocent", T0 - timedelta(days=400), account_type="personal"))
    fresh = [ev("account_registered", f"sock-{i}", T0 + timedelta(seconds=i), account_type="personal")
             for i in range(20)]
    decide(svc, *fresh)
    reports = [ev("report", f"sock-{i}", T0 + timedelta(minutes=5, seconds=i), target="innocent",
                  reason="counterfeit", note="他卖假货")
               for i in range(20)]
    ds = decide(svc, *reports)
    assert {d["verdict"] for d in ds} <= {"allow", "review"}
    assert ds[-1]["verdict"] == "review" and ds[-1]["rules"] == ["report-threshold"]
    for d in ds:
        assert {a["action"] for a in d["actions"]} <= {"case_opened"}
        assert all(a["account"] == "innocent" for a in d["actions"])
    no_measures(svc.store.account_state("innocent"))
    cases = rows(svc, "select account from cases")
    assert cases and {c[0] for c in cases} == {"innocent"}
    # and the target keeps posting as before
    later = decide(svc, post("innocent", ORDINARY, T0 + timedelta(hours=1)))[0]
    assert later["verdict"] == "allow"
    # the reporters were not punished either (reports are not violations)
    for i in range(20):
        no_measures(svc.store.account_state(f"sock-{i}"))


# --- push quotas (S9) ----------------------------------------------------------------------------------


def push(actor: str, at: datetime):
    return ev("message_push", actor, at, audience=5000)


def test_personal_account_cannot_push(svc):
    decide(svc, ev("account_registered", "person", T0 - timedelta(days=3), account_type="personal"))
    d = decide(svc, push("person", T0))[0]
    assert d["verdict"] == "remove" and "personal-account-push" in d["rules"]
    assert svc.store.account_state("person").strikes == []


def test_subscription_account_one_push_a_day(svc):
    decide(svc, ev("account_registered", "daily-news", T0 - timedelta(days=30), account_type="subscription"))
    first, second = decide(svc, push("daily-news", T0), push("daily-news", T0 + timedelta(hours=3)))
    assert first["verdict"] == "allow" and first["rules"] == []
    assert second["verdict"] == "remove" and second["rules"] == ["subscription-daily-push"]
    # the next calendar day (Shanghai time) there is room again
    next_day = decide(svc, push("daily-news", T0 + timedelta(hours=28)))[0]
    assert next_day["verdict"] == "allow" and next_day["signals"]["quota.pushes_left"] == 1
    assert svc.store.account_state("daily-news").strikes == []


def test_service_account_four_pushes_a_calendar_month(svc):
    decide(svc, ev("account_registered", "bank-service", T0 - timedelta(days=90), account_type="service"))
    ds = decide(svc, *[push("bank-service", T0 + timedelta(days=6 * i)) for i in range(5)])
    assert [d["verdict"] for d in ds] == ["allow"] * 4 + ["remove"]
    assert ds[4]["rules"] == ["service-monthly-push"]
    # a service account may push twice in one day (the daily quota is the subscription account's)
    assert "subscription-daily-push" not in {r for d in ds for r in d["rules"]}
    # in the next calendar month (April 8th) there is room again
    later = decide(svc, push("bank-service", T0 + timedelta(days=37)))[0]
    assert later["verdict"] == "allow"


# --- account state -------------------------------------------------------------------------------------


def test_banned_account_activity_is_removed_without_strikes(svc):
    decide(svc, ev("moderator_action", "mod-1", T0, target="evader", action="ban", reason="repeat counterfeit"))
    state = svc.store.account_state("evader")
    assert state.ban is not None
    strikes_before = len(state.strikes)
    ds = decide(svc, post("evader", ORDINARY, T0 + timedelta(hours=1)),
                post("evader", "无抵押贷款，网贷秒批", T0 + timedelta(hours=2)),
                ev("friend_request", "evader", T0 + timedelta(hours=3), target="victim"))
    for d in ds:
        assert d["verdict"] == "remove"
        assert "banned-account-activity" in d["rules"]
        assert not any(a["action"] == "strike" for a in d["actions"])
    assert ds[0]["rules"] == ["banned-account-activity"]
    assert len(svc.store.account_state("evader").strikes) == strikes_before


def test_restricted_feature_use_is_removed(svc):
    decide(svc, ev("moderator_action", "mod-1", T0, target="sharer", action="restrict", reason="share spam",
                   duration_days=3, feature="share_to_moments"))
    ds = decide(svc,
                ev("share", "sharer", T0 + timedelta(hours=1), item="https://example.com/p", destination="moments"),
                ev("share", "sharer", T0 + timedelta(hours=2), item="https://example.com/p", destination="chat"),
                post("sharer", ORDINARY, T0 + timedelta(hours=3)),
                ev("share", "sharer", T0 + timedelta(days=3, hours=1), item="https://example.com/q",
                   destination="moments"))
    assert ds[0]["verdict"] == "remove" and ds[0]["rules"] == ["restricted-feature-use"]
    assert not any(a["action"] == "strike" for a in ds[0]["actions"])
    assert [d["verdict"] for d in ds[1:]] == ["allow", "allow", "allow"]  # other features; after expiry


def test_broad_restriction_covers_the_narrow_feature(svc):
    decide(svc, ev("moderator_action", "mod-1", T0, target="poster", action="restrict", reason="spam",
                   duration_days=1, feature="post"))
    d = decide(svc, post("poster", ORDINARY, T0 + timedelta(hours=1)))[0]
    assert d["verdict"] == "remove" and d["rules"] == ["restricted-feature-use"]


def test_strikes_escalate_along_the_ladder(svc):
    texts = ["无抵押贷款", "网贷秒批", "包治百病"]
    ds = decide(svc, *[post("repeat", t, T0 + timedelta(hours=i), surface="comment") for i, t in enumerate(texts)])
    assert [d["verdict"] for d in ds[:2]] == ["remove", "remove"]
    assert ds[2]["verdict"] == "restrict"  # third strike: the ladder's first step
    state = svc.store.account_state("repeat")
    assert "post_moments" in state.restrictions and len(state.strikes) == 3


def test_the_same_id_twice_in_one_batch(svc):
    wire = ev_wire("twice-in-a-batch", "dup-b", "网贷秒批")
    first, second = svc.pipeline.submit([parse_event(wire), parse_event(wire)])
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.decision["verdict"] == first.decision["verdict"] == "remove"
    assert len(svc.store.account_state("dup-b").strikes) == 1
    assert len(rows(svc, "select id from events")) == 1


@pytest.mark.parametrize("where", ["actor", "id", "body.target"])
def test_an_accepted_event_is_stored_on_every_backend(svc, where):
    """EVENTS.md: an event is either refused whole, naming the field, or decided. A NUL character in an id is
    accepted by the schema; SQLite stores it, PostgreSQL must not then fail the whole batch with a DataError."""
    wire = {"id": "nul-id", "type": "friend_request", "occurred_at": T0.isoformat(), "actor": "nul-actor",
            "body": {"target": "nul-target"}}
    if where == "body.target":
        wire["body"]["target"] = "nul\x00target"
    else:
        wire[where] = f"nul\x00{where}"
    try:
        event = parse_event(wire)
    except EventError as exc:
        assert [e["field"] for e in exc.errors] == [where]
        return
    ordinary = ev("friend_request", "nul-neighbour", T0, target="someone")
    outcomes = svc.pipeline.submit([ordinary, event])
    assert [o.decision["event_id"] for o in outcomes] == [ordinary.id, event.id]
    assert len(rows(svc, "select id from events")) == 2


# --- quotas count what went out; bursts make one case -------------------------------------------------


def test_a_refused_push_does_not_use_up_the_quota(svc):
    decide(svc, ev("account_registered", "digest", T0 - timedelta(days=30), account_type="subscription"))
    decide(svc, ev("moderator_action", "mod-1", T0 - timedelta(hours=1), target="digest", action="suspend",
                   reason="review", duration_days=1))
    refused = decide(svc, push("digest", T0))[0]
    assert refused["verdict"] == "remove" and "suspended-account-activity" in refused["rules"]
    decide(svc, ev("moderator_action", "mod-1", T0 + timedelta(hours=1), target="digest", action="lift",
                   reason="cleared"))
    # the same calendar day: the refused push must not have used the day's one push
    later = decide(svc, push("digest", T0 + timedelta(hours=2)))[0]
    assert later["verdict"] == "allow", later
    assert later["signals"]["quota.pushes_left"] == 1


def test_a_burst_of_reports_opens_one_case_per_week(svc):
    reports = [ev("report", f"r-{i}", T0 + timedelta(minutes=i), target="seller-x", reason="counterfeit")
               for i in range(12)]
    decide(svc, *reports)
    assert len(rows(svc, "select id from cases where account = 'seller-x'")) == 1
    # a week later, a new burst is a new case
    again = [ev("report", f"r2-{i}", T0 + timedelta(days=8, minutes=i), target="seller-x", reason="counterfeit")
             for i in range(6)]
    decide(svc, *again)
    assert len(rows(svc, "select id from cases where account = 'seller-x'")) == 2


def test_a_moderator_ban_records_its_strike(svc):
    decide(svc, ev("moderator_action", "mod-2", T0, target="scammer", action="ban", reason="fraud"))
    state = svc.store.account_state("scammer")
    assert state.ban is not None and [s.rule for s in state.strikes] == ["moderator"]
