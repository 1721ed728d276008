"""Campaign overlays (S12): validation like pack rules, the window by the event's time (edges to the millisecond),
scope, each kind of override, the overlap rule, decisions naming the campaign, history, and no restart needed."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from api_fixtures import open_api
from typer.testing import CliRunner

from clearcircle.cli.main import app as cli_app
from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.policy.campaigns import CampaignError, apply_thresholds, parse_campaign
from clearcircle.policy.decision import Decision
from clearcircle.policy.pack import builtin_pack_path, load_pack
from clearcircle.service import open_service
from clearcircle.signals.registry import load_builtin_signals

CST = timezone(timedelta(hours=8))
START = datetime(2031, 3, 1, 0, 0, tzinfo=CST)
END = datetime(2031, 3, 8, 0, 0, tzinfo=CST)
MS = timedelta(milliseconds=1)
CONTACT_POST = "新品上市，详情私聊"  # fires moments-contact-solicitation (label) in the built-in pack
COUNTERFEIT_ONLY = "高仿包包"  # counterfeit words, no selling cue: nothing fires
COUNTERFEIT_SALE = "高仿包包，加微信"  # counterfeit-sale-text (remove)
MLM = "诚招代理，发展下线"

_ids = itertools.count(1)


def campaign(name: str = "spring-clean", start: datetime = START, end: datetime = END, **overrides: Any) -> dict:
    body: dict[str, Any] = {"name": name, "starts_at": start.isoformat(), "ends_at": end.isoformat(),
                            "overrides": overrides.pop("overrides", None) or {
                                "moments-contact-solicitation": {"action": {"type": "limit_reach", "days": 3}}}}
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def pack():
    return load_pack(builtin_pack_path())


@pytest.fixture(scope="module")
def registry():
    return load_builtin_signals()


@pytest.fixture
def svc(db_url, tmp_path):
    service = open_service(Settings(db_url=db_url, key_file=tmp_path / "k"))
    yield service
    service.close()


def create(svc, body: dict, by: str = "test") -> dict:
    spec = parse_campaign(body, svc.pack, svc.pipeline.registry)
    return svc.store.campaign_save(spec.wire(), spec.starts_ms, spec.ends_ms, by)[0]


def event(type_: str, actor: str, at: datetime, **body: Any):
    return parse_event({"id": f"cp-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(), "actor": actor,
                        "body": body})


def decide(svc, *events) -> list[dict[str, Any]]:
    out = [o.decision for o in svc.pipeline.submit(list(events))]
    for d in out:
        Decision.model_validate(d)
    return out


def post(svc, text: str, at: datetime = START + timedelta(days=1), surface: str = "moments",
         actor: str | None = None) -> dict[str, Any]:
    return decide(svc, event("post_created", actor or f"poster-{next(_ids)}", at, surface=surface, text=text))[0]


# --- validation ------------------------------------------------------------------------------------------------------


def problems(body: dict, pack, registry) -> dict[str, str]:
    with pytest.raises(CampaignError) as info:
        parse_campaign(body, pack, registry)
    return {p["field"]: p["message"] for p in info.value.problems}


def test_a_valid_campaign_parses(pack, registry):
    spec = parse_campaign(campaign(scope={"categories": ["marketing_volume"], "surfaces": ["moments"],
                                          "account_classes": ["personal", "merchant"]}), pack, registry)
    assert spec.starts_ms == int(START.timestamp() * 1000)
    assert spec.wire()["starts_at"] == "2031-03-01T00:00:00+08:00"


@pytest.mark.parametrize(("overrides", "field", "words"), [
    ({"no-such-rule": {"mode": "enforce"}}, "overrides.no-such-rule", "no rule"),
    ({"sensitive-words": {"when": "text.categoriez == 1"}}, "overrides.sensitive-words.when", "did you mean"),
    ({"sensitive-words": {"when": "any_of(text.categories, ["}}, "overrides.sensitive-words.when", "syntax"),
    ({"sensitive-words": {"when": "referral.reward > 1"}}, "overrides.sensitive-words.when", "never computed"),
    ({"report-threshold": {"thresholds": {"counters.reports_received_7d": 9}}},
     "overrides.report-threshold.thresholds", "less often"),
    ({"report-threshold": {"thresholds": {"counters.posts_1d": 1}}}, "overrides.report-threshold.thresholds",
     "compares no"),
    ({"report-threshold": {"thresholds": {"counters.reports_received_7d": 2}, "when": "true"}},
     "overrides.report-threshold", "not both"),
    ({"counterfeit-sale-text": {"action": "label"}}, "overrides.counterfeit-sale-text.action", "weaker"),
    ({"counterfeit-sale-text": {"action": {"type": "restrict", "feature": "teleport"}}},
     "overrides.counterfeit-sale-text.action.feature", "unknown feature"),
    ({"counterfeit-sale-text": {}}, "overrides.counterfeit-sale-text", "changes nothing"),
    ({"*": {"action": "ban"}}, "overrides.*", "only `mode: enforce`"),
])
def test_invalid_overrides_name_the_field(pack, registry, overrides, field, words):
    found = problems(campaign(overrides=overrides), pack, registry)
    assert field in found, found
    assert words in found[field]


def test_scope_is_checked(pack, registry):
    found = problems(campaign(scope={"categories": ["food"]}), pack, registry)
    assert "outside the campaign's scope" in found["overrides.moments-contact-solicitation"]
    found = problems(campaign(scope={"surfaces": ["moments"]}, overrides={"report-threshold": {"mode": "enforce"}}),
                     pack, registry)
    assert "posts only" in found["overrides.report-threshold"]
    found = problems(campaign(scope={"account_classes": ["emperor"], "surfaces": ["radio"]}), pack, registry)
    assert set(found) == {"scope.account_classes.0", "scope.surfaces.0"}


@pytest.mark.parametrize(("change", "field"), [
    ({"ends_at": START.isoformat()}, "ends_at"),
    ({"starts_at": "2031-03-01T00:00:00"}, "starts_at"),  # no offset
    ({"starts_at": 1900000000}, "starts_at"),  # a number is not RFC 3339
    ({"name": "Spring Clean!"}, "name"),
    ({"overrides": {}}, "overrides"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_campaign_fields(pack, registry, change, field):
    body = campaign()
    body.update(change)
    if field == "overrides":
        body["overrides"] = {}
    assert field in problems(body, pack, registry)


@pytest.mark.parametrize(("source", "thresholds", "expected"), [
    ("counters.x > 10", {"counters.x": 5}, "counters.x > 5"),
    ("counters.x >= 10 and a.b", {"counters.x": 10}, "counters.x >= 10 and a.b"),
    ("10 < counters.x", {"counters.x": 4}, "4 < counters.x"),
    ("account.age_days < 7", {"account.age_days": 30}, "account.age_days < 30"),
    ("not counters.x < 3", {"counters.x": 1}, "not counters.x < 1"),
    ("counters.a / counters.b > 0.5", {"counters.a/counters.b": 0.25}, "counters.a / counters.b > 0.25"),
    ("counters.x > 10 or counters.x > 20", {"counters.x": -1}, "counters.x > -1 or counters.x > -1"),
])
def test_thresholds_tighten(source, thresholds, expected):
    assert apply_thresholds(source, thresholds) == expected


@pytest.mark.parametrize(("source", "thresholds", "words"), [
    ("counters.x > 10", {"counters.x": 11}, "less often"),
    ("account.age_days < 7", {"account.age_days": 1}, "less often"),
    ("not counters.x > 3", {"counters.x": 1}, "less often"),
    ("account.type == 3", {"account.type": 4}, "not a threshold"),
    ("counters.x > 10", {"counters.y": 1}, "compares no"),
])
def test_thresholds_never_loosen(source, thresholds, words):
    with pytest.raises(ValueError, match=words):
        apply_thresholds(source, thresholds)


# --- the window, by the event's time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("at", "inside"), [
    (START - MS, False),
    (START, True),
    (END - MS, True),
    (END, False),
])
def test_window_edges(svc, at, inside):
    create(svc, campaign())
    d = post(svc, CONTACT_POST, at)
    assert d["rules"] == ["moments-contact-solicitation"]
    if inside:
        assert d["verdict"] == "limit_reach" and d["campaigns"] == ["spring-clean"]
    else:
        assert d["verdict"] == "label" and "campaigns" not in d


def test_a_decision_the_campaign_did_not_change_does_not_name_it(svc):
    create(svc, campaign())
    for text in ("今天的晚霞真好看", COUNTERFEIT_SALE):
        assert "campaigns" not in post(svc, text)


def test_the_decision_is_stored_as_returned(svc):
    create(svc, campaign())
    d = post(svc, CONTACT_POST)
    assert svc.store.decision(d["event_id"]) == d
    assert d["actions"][0]["action"] == "limit_reach" and d["actions"][0]["rule"] == "moments-contact-solicitation"
    assert svc.store.verify_audit()[1] == []


# --- scope -----------------------------------------------------------------------------------------------------------


def test_surface_scope(svc):
    create(svc, campaign(scope={"surfaces": ["article"]},
                         overrides={"counterfeit-sale-text": {"action": {"type": "suspend", "days": 3}}}))
    assert post(svc, COUNTERFEIT_SALE, surface="moments")["verdict"] == "remove"
    d = post(svc, COUNTERFEIT_SALE, surface="article")
    assert d["verdict"] == "suspend" and d["campaigns"] == ["spring-clean"]


def test_account_class_scope(svc):
    create(svc, campaign(scope={"account_classes": ["subscription"]},
                         overrides={"counterfeit-sale-text": {"action": {"type": "suspend", "days": 3}}}))
    day = START + timedelta(days=1)
    decide(svc, event("account_registered", "pa-1", day - timedelta(days=30), account_type="subscription"),
           event("account_registered", "pe-1", day - timedelta(days=30), account_type="personal"))
    assert post(svc, COUNTERFEIT_SALE, actor="pe-1")["verdict"] == "remove"
    assert post(svc, COUNTERFEIT_SALE, actor="pa-1")["verdict"] == "suspend"
    assert post(svc, COUNTERFEIT_SALE, actor="never-registered")["verdict"] == "remove"  # class "unknown"


def test_category_scope_with_all_rules(svc):
    """`"*": {mode: enforce}` enforces every shadow rule of the scope's categories, and only those."""
    create(svc, campaign(scope={"categories": ["follower_brushing"]}, overrides={
        "*": {"mode": "enforce"}, "follow-burst": {"thresholds": {"counters.follows_1h": 2}}}))
    at = START + timedelta(days=1)
    ds = decide(svc, *[event("follow", "brusher", at + timedelta(seconds=i), target=f"pa-{i}") for i in range(3)])
    assert [d["verdict"] for d in ds] == ["allow", "allow", "review"]
    assert ds[2]["rules"] == ["follow-burst"] and ds[2]["campaigns"] == ["spring-clean"]


# --- each kind of override -------------------------------------------------------------------------------------------


def test_thresholds_override(svc):
    create(svc, campaign(overrides={"report-threshold": {"thresholds": {"counters.reports_received_7d": 2}}}))
    at = START + timedelta(days=1)
    ds = decide(svc, *[event("report", f"reporter-{i}", at + timedelta(minutes=i), target="reported-shop",
                             reason="marketing") for i in range(3)])
    assert [d["verdict"] for d in ds] == ["allow", "review", "review"]
    assert ds[1]["campaigns"] == ["spring-clean"] and ds[1]["rules"] == ["report-threshold"]
    assert ds[1]["signals"]["counters.reports_received_7d"] == 2


def test_condition_override(svc):
    create(svc, campaign(overrides={"sensitive-words": {
        "when": 'any_of(text.categories, ["sensitive", "counterfeit"])'}}))
    d = post(svc, COUNTERFEIT_ONLY)
    assert d["rules"] == ["sensitive-words"] and d["verdict"] == "remove" and d["campaigns"] == ["spring-clean"]
    outside = post(svc, COUNTERFEIT_ONLY, START - timedelta(days=1))
    assert outside["verdict"] == "allow" and "campaigns" not in outside


def test_shadow_to_enforce(svc):
    create(svc, campaign(overrides={"follow-burst": {"mode": "enforce"}}))
    at = START + timedelta(days=1)
    ds = decide(svc, *[event("follow", "mass-follower", at + timedelta(seconds=i), target=f"t-{i}")
                       for i in range(101)])
    assert ds[-1]["rules"] == ["follow-burst"] and ds[-1]["shadow_rules"] == []
    assert ds[-1]["verdict"] == "review" and ds[-1]["campaigns"] == ["spring-clean"]
    assert all("campaigns" not in d for d in ds[:-1])


# --- overlapping campaigns -------------------------------------------------------------------------------------------


def test_overlap_the_strongest_action_wins(svc):
    create(svc, campaign("early-strong", START, END, overrides={
        "moments-contact-solicitation": {"action": {"type": "restrict", "feature": "post_moments", "days": 1}}}))
    create(svc, campaign("late-weak", START + timedelta(days=1), END, overrides={
        "moments-contact-solicitation": {"action": {"type": "limit_reach", "days": 3}}}))
    d = post(svc, CONTACT_POST, START + timedelta(days=2))
    assert d["verdict"] == "restrict" and d["campaigns"] == ["early-strong"]


def test_overlap_equal_strength_the_latest_started_wins(svc):
    create(svc, campaign("first", START, END, overrides={
        "moments-contact-solicitation": {"action": {"type": "limit_reach", "days": 3}}}))
    create(svc, campaign("second", START + timedelta(days=1), END, overrides={
        "moments-contact-solicitation": {"action": {"type": "limit_reach", "days": 5}}}))
    d = post(svc, CONTACT_POST, START + timedelta(days=2))
    assert d["campaigns"] == ["second"]
    until = d["actions"][0]["detail"]["until_ms"]
    assert until == int((START + timedelta(days=7)).timestamp() * 1000)  # 5 days from the post
    before = post(svc, CONTACT_POST, START + timedelta(hours=12))  # only `first` has started
    assert before["campaigns"] == ["first"]


def test_overlap_the_latest_started_condition_wins(svc):
    create(svc, campaign("counterfeit-drive", START, END, overrides={
        "sensitive-words": {"when": 'any_of(text.categories, ["sensitive", "counterfeit"])'}}))
    create(svc, campaign("mlm-drive", START + timedelta(days=1), END, overrides={
        "sensitive-words": {"when": 'any_of(text.categories, ["sensitive", "mlm"])'}}))
    early = post(svc, COUNTERFEIT_ONLY, START + timedelta(hours=12))
    assert early["rules"] == ["sensitive-words"] and early["campaigns"] == ["counterfeit-drive"]
    both = post(svc, COUNTERFEIT_ONLY, START + timedelta(days=2))
    assert both["verdict"] == "allow" and "campaigns" not in both  # mlm-drive's condition wins: no change
    mlm = post(svc, MLM, START + timedelta(days=2))
    assert "sensitive-words" in mlm["rules"] and mlm["campaigns"] == ["mlm-drive"]


def test_overlap_any_campaign_enforcing_enforces_and_all_are_named(svc):
    for name in ("brushing-a", "brushing-b"):
        create(svc, campaign(name, overrides={"follow-burst": {"mode": "enforce"}}))
    create(svc, campaign("brushing-c", overrides={"follow-burst": {"thresholds": {"counters.follows_1h": 1}}}))
    at = START + timedelta(days=1)
    ds = decide(svc, *[event("follow", "fan", at + timedelta(seconds=i), target=f"t-{i}") for i in range(2)])
    assert ds[1]["verdict"] == "review"
    assert sorted(ds[1]["campaigns"]) == ["brushing-a", "brushing-b", "brushing-c"]


# --- the store: history, changes, ending, no restart -----------------------------------------------------------------


def test_history_created_changed_ended(svc):
    create(svc, campaign())
    body = campaign()
    body["overrides"]["moments-contact-solicitation"]["action"]["days"] = 5
    spec = parse_campaign(body, svc.pack, svc.pipeline.registry)
    saved, change = svc.store.campaign_save(spec.wire(), spec.starts_ms, spec.ends_ms, "test")
    assert change == "changed" and saved["revision"] == 2
    assert svc.store.campaign_save(spec.wire(), spec.starts_ms, spec.ends_ms, "test")[1] == "unchanged"
    ended, did = svc.store.campaign_end("spring-clean", "test")
    assert did and ended["ended_ms"] is not None
    assert svc.store.campaign_end("spring-clean", "test")[1] is False
    history = svc.store.campaign_history("spring-clean")
    assert [h["change"] for h in history] == ["created", "changed", "ended"]
    assert history[1]["spec"]["overrides"]["moments-contact-solicitation"]["action"]["days"] == 5
    kinds = [r.kind for r in svc.store.audit_rows() if r.subject == "campaign:spring-clean"]
    assert kinds == ["campaign_created", "campaign_changed", "campaign_ended"]
    assert svc.store.verify_audit()[1] == []


@pytest.fixture
def api(db_url, tmp_path):
    with open_api(db_url, tmp_path) as a:
        a.keys["compliance"] = a.svc.store.create_key("compliance", "test-compliance")[1]
        yield a


def api_post(api, text: str, at: datetime) -> dict[str, Any]:
    r = api.post_event({"id": f"cp-api-{next(_ids)}", "type": "post_created", "occurred_at": at.isoformat(),
                        "actor": f"api-poster-{next(_ids)}", "body": {"surface": "moments", "text": text}})
    assert r.status_code == 200, r.text
    return r.json()


def test_no_restart_create_change_end_through_the_api(api):
    now = datetime.now(CST).replace(microsecond=0)
    window = campaign("live-campaign", now - timedelta(days=1), now + timedelta(days=30))
    assert api_post(api, CONTACT_POST, now)["verdict"] == "label"
    created = api.client.post("/v1/campaigns", json=window, headers=api.h("compliance"))
    assert created.status_code == 200, created.text
    assert created.json()["change"] == "created" and created.json()["campaign"]["status"] == "active"
    d = api_post(api, CONTACT_POST, now)  # the same Service, no restart
    assert d["verdict"] == "limit_reach" and d["campaigns"] == ["live-campaign"]
    got = api.client.get(f"/v1/decisions/{d['event_id']}", headers=api.h("compliance")).json()
    assert got["campaigns"] == ["live-campaign"]
    assert api.client.post("/v1/campaigns", json=window, headers=api.h("admin")).status_code == 409
    stronger = {**window, "overrides": {"moments-contact-solicitation": {
        "action": {"type": "restrict", "feature": "post_moments", "days": 1}}}}
    changed = api.client.put("/v1/campaigns/live-campaign", json=stronger, headers=api.h("admin"))
    assert changed.status_code == 200 and changed.json()["change"] == "changed"
    assert api_post(api, CONTACT_POST, now)["verdict"] == "restrict"
    ended = api.client.post("/v1/campaigns/live-campaign/end", headers=api.h("compliance"))
    assert ended.status_code == 200 and ended.json()["ended"] is True
    after = api_post(api, CONTACT_POST, datetime.now(CST) + timedelta(seconds=1))
    assert after["verdict"] == "label" and after["campaigns"] == []
    assert api.client.put("/v1/campaigns/live-campaign", json=stronger, headers=api.h("admin")).status_code == 409
    shown = api.client.get("/v1/campaigns/live-campaign", headers=api.h("moderator")).json()
    assert [h["change"] for h in shown["history"]] == ["created", "changed", "ended"]
    assert shown["campaign"]["status"] == "ended" and shown["problems"] == []
    listed = api.client.get("/v1/campaigns", headers=api.h("moderator")).json()["campaigns"]
    assert [c["name"] for c in listed] == ["live-campaign"]
    assert api.svc.store.verify_audit()[1] == []


def test_api_refuses_an_invalid_campaign_naming_the_field(api):
    bad = campaign(overrides={"sensitive-words": {"when": "text.categoriez"}})
    r = api.client.post("/v1/campaigns", json=bad, headers=api.h("compliance"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.overrides.sensitive-words.when"
    missing = api.client.post("/v1/campaigns", json={"name": "x1"}, headers=api.h("compliance"))
    assert missing.status_code == 422
    assert api.client.put("/v1/campaigns/other", json=campaign(), headers=api.h("admin")).status_code == 422
    assert api.client.put("/v1/campaigns/spring-clean", json=campaign(), headers=api.h("admin")).status_code == 404
    assert api.client.post("/v1/campaigns/nope/end", headers=api.h("admin")).status_code == 404
    assert api.client.get("/v1/campaigns/nope", headers=api.h("admin")).status_code == 404
    assert api.svc.store.campaign_list() == []


def test_cli_load_list_show_end(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLEARCIRCLE_HASH_KEY", "k")
    runner = CliRunner()
    file = tmp_path / "campaign.yaml"
    body = campaign(description="月度专项整治")
    file.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    loaded = runner.invoke(cli_app, ["campaigns", "load", str(file), "--db", db_url])
    assert loaded.exit_code == 0, loaded.output
    assert "created" in loaded.output
    # an unquoted YAML timestamp is read as a time too
    file.write_text(file.read_text(encoding="utf-8").replace("'2031-03-01T00:00:00+08:00'",
                                                             "2031-03-01T00:00:00+08:00"), encoding="utf-8")
    assert "unchanged" in runner.invoke(cli_app, ["campaigns", "load", str(file), "--db", db_url]).output
    listed = runner.invoke(cli_app, ["campaigns", "list", "--db", db_url])
    assert listed.exit_code == 0 and "spring-clean" in listed.output
    shown = runner.invoke(cli_app, ["campaigns", "show", "spring-clean", "--db", db_url])
    assert shown.exit_code == 0 and "月度专项整治" in shown.output
    assert runner.invoke(cli_app, ["campaigns", "end", "spring-clean", "--db", db_url]).exit_code == 0
    assert runner.invoke(cli_app, ["campaigns", "load", str(file), "--db", db_url]).exit_code == 1  # ended: final
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(campaign("bad-one", overrides={"nope": {"mode": "enforce"}})), encoding="utf-8")
    refused = runner.invoke(cli_app, ["campaigns", "load", str(bad), "--db", db_url])
    assert refused.exit_code == 1 and "overrides.nope" in refused.output
    assert runner.invoke(cli_app, ["campaigns", "show", "bad-one", "--db", db_url]).exit_code == 1
    assert runner.invoke(cli_app, ["campaigns", "load", str(tmp_path / "missing.yaml"), "--db", db_url]).exit_code == 2


def test_replay_out_names_the_campaign_that_changed_a_decision(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLEARCIRCLE_HASH_KEY", "k")
    runner = CliRunner()
    file = tmp_path / "campaign.yaml"
    file.write_text(yaml.safe_dump(campaign(), allow_unicode=True), encoding="utf-8")
    assert runner.invoke(cli_app, ["campaigns", "load", str(file), "--db", db_url]).exit_code == 0
    events = tmp_path / "events.jsonl"
    lines = [{"id": f"rp-{i}", "type": "post_created", "occurred_at": at.isoformat(), "actor": f"rp-poster-{i}",
              "body": {"surface": "moments", "text": CONTACT_POST}}
             for i, at in enumerate((START + timedelta(days=1), END + timedelta(days=1)))]
    events.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "decisions.jsonl"
    result = runner.invoke(cli_app, ["replay", str(events), "--out", str(out), "--db", db_url])
    assert result.exit_code == 0, result.output
    inside, after = (json.loads(x) for x in out.read_text(encoding="utf-8").splitlines())
    assert inside["campaigns"] == ["spring-clean"] and inside["verdict"] == "limit_reach"
    assert "campaigns" not in after and after["verdict"] == "label"
    assert inside["pack_version"] == after["pack_version"] and inside["evidence"]
