"""The review queue: where cases come from, priority = severity x reach x confidence, claims, service levels,
decisions (uphold / overturn / escalate) and the labels they leave on the rules and signals that raised a case."""

from __future__ import annotations

import math
from datetime import timedelta

import orjson
import pytest
import sqlalchemy as sa
from api_fixtures import open_api
from review_fixtures import T0, cases_of, decide, ev, open_svc, registered, report, rows

from clearcircle.review import queue
from clearcircle.review.errors import Conflict, NotFound, ReviewError
from clearcircle.review.stats import rule_stats

SALE = "新品上市，优惠价99元，加微信购买"  # an article that sells: unregistered-public-account-sale (review)


def _rule_case(svc, account: str, at, audience: int | None = None) -> int:
    events = [registered(account, at - timedelta(days=50), "subscription")]
    if audience is not None:
        events.append(ev("message_push", account, at - timedelta(days=1), audience=audience))
    events.append(ev("post_created", account, at, surface="article", text=SALE))
    d = decide(svc, *events)[-1]
    assert d["verdict"] == "review" and d["rules"] == ["unregistered-public-account-sale"], d
    return cases_of(svc, account)[-1].id


def _report_case(svc, target: str, at) -> int:
    decide(svc, *[report(f"{target}-r{i}", target, at + timedelta(minutes=i)) for i in range(5)])
    return cases_of(svc, target)[-1].id


def test_cases_from_every_source_ranked_by_priority(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        quiet = _rule_case(svc, "small-shop", T0)
        loud = _rule_case(svc, "big-brand", T0, audience=100_000)
        reported = _report_case(svc, "reported", T0)
        decide(svc, *[registered(f"b{i}", T0 - timedelta(days=90)) for i in range(3)])
        decide(svc, *[ev("buyer_complaint", f"b{i}", T0 + timedelta(hours=i), seller="seller", reason="counterfeit")
                      for i in range(3)])
        complained = cases_of(svc, "seller")[-1].id
        found = queue.open_case(svc.store, "ring-1", "finding-77", "detector", ["lockstep-follow"], 5)
        cases = {c.id: c for c in queue.list_cases(svc.store, svc.pack.settings)}
        assert {cases[i].source for i in (quiet, reported, complained, found)} == {"rule", "report", "complaint",
                                                                                   "detector"}
        # priority = severity x reach x confidence, each factor from stored facts
        for c in cases.values():
            assert c.priority == pytest.approx(c.severity * c.reach * c.confidence, rel=1e-3)
            assert c.confidence == 0.5  # no labels yet
        assert cases[quiet].reach == 1.0
        assert cases[loud].reach == pytest.approx(1 + math.log10(100_001), rel=1e-3)
        assert cases[loud].priority > cases[quiet].priority
        listed = [c.id for c in queue.list_cases(svc.store, svc.pack.settings)]
        assert listed == sorted(listed, key=lambda i: -cases[i].priority) and listed[0] == loud
        # service level by severity (pack.yaml review.sla_hours); age from the event that opened the case
        sla = svc.pack.settings.review.sla_hours
        at = int((T0 + timedelta(hours=10)).timestamp() * 1000)
        c = queue.get_case(svc.store, svc.pack.settings, quiet, at_ms=at)
        assert c.sla_ms == sla[c.severity] * 3_600_000 and c.age_ms == 10 * 3_600_000
        assert c.overdue is (10 > sla[c.severity])
        with pytest.raises(ReviewError):
            queue.open_case(svc.store, "x", "f", "gossip", ["r"], 3)
        with pytest.raises(NotFound):
            queue.get_case(svc.store, svc.pack.settings, 999_999)
    finally:
        svc.close()


def test_overturned_labels_lower_a_rules_confidence(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        first = [_rule_case(svc, f"shop-{i}", T0 + timedelta(hours=i)) for i in range(3)]
        other = _report_case(svc, "target", T0)
        before = queue.get_case(svc.store, svc.pack.settings, other)
        for case_id in first:
            queue.decide_case(svc, case_id, "overturn", "registered offline, not a violation", "mod-1")
        newer = _rule_case(svc, "shop-9", T0 + timedelta(days=1))
        c = queue.get_case(svc.store, svc.pack.settings, newer)
        assert c.confidence == pytest.approx(1 / 5)  # Beta(1 + 0, 1 + 3)
        assert queue.get_case(svc.store, svc.pack.settings, other).confidence == before.confidence
        stats = {s.rule: s for s in rule_stats(svc.store, svc.pack)}
        assert stats["unregistered-public-account-sale"].overturned == 3
        assert stats["unregistered-public-account-sale"].precision == 0.0
        assert stats["unregistered-public-account-sale"].hits == 4
    finally:
        svc.close()


def test_claims_and_assignment(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        case_id = _rule_case(svc, "shop", T0)
        assert queue.claim_case(svc, case_id, "alice").claimed_by == "alice"
        assert queue.claim_case(svc, case_id, "alice").claimed_by == "alice"  # her own: nothing changes
        with pytest.raises(Conflict):
            queue.claim_case(svc, case_id, "bob")
        with pytest.raises(Conflict):
            queue.decide_case(svc, case_id, "uphold", "mine now", "bob")
        with svc.store.engine.begin() as conn:  # alice's claim runs out (pack.yaml review.claim_minutes)
            conn.execute(sa.text("update cases set claimed_ms = 0 where id = :c"), {"c": case_id})
        assert queue.claim_case(svc, case_id, "carol").claimed_by == "carol"
        assert queue.assign_case(svc, case_id, "bob", "lead").claimed_by == "bob"
        assert [c.id for c in queue.list_cases(svc.store, svc.pack.settings, claimed_by="bob")] == [case_id]
        kinds = [r[0] for r in rows(svc, "select kind from audit where subject = 'shop' and kind like 'case_%' "
                                         "order by seq")]
        assert kinds == ["case_claimed", "case_claimed", "case_assigned"]
        with pytest.raises(ReviewError):
            queue.claim_case(svc, case_id, "  ")
        queue.decide_case(svc, case_id, "uphold", "sells without registration", "bob")
        with pytest.raises(Conflict):
            queue.claim_case(svc, case_id, "alice")  # decided cases leave the queue
    finally:
        svc.close()


def test_decisions_label_what_raised_the_case(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        upheld = _rule_case(svc, "seller-a", T0)
        result = queue.decide_case(svc, upheld, "uphold", "no registration on file", "mod-1")
        assert result["changed"] and result["status"] == "upheld"
        labels = {(k, n, o) for k, n, o in rows(svc, "select kind, name, outcome from case_labels "
                                                     "where case_id = :c", c=upheld)}
        assert ("rule", "unregistered-public-account-sale", "upheld") in labels
        signals = {n for k, n, _o in labels if k == "signal"}
        assert {"post.surface", "account.type", "merchant.state"} <= signals
        # the same decision again changes nothing; another is refused; a reason is required
        assert queue.decide_case(svc, upheld, "uphold", "again", "mod-1")["changed"] is False
        with pytest.raises(Conflict):
            queue.decide_case(svc, upheld, "overturn", "second thoughts", "mod-1")
        other = _rule_case(svc, "seller-b", T0)
        with pytest.raises(ReviewError):
            queue.decide_case(svc, other, "uphold", " ", "mod-1")
        with pytest.raises(ReviewError):
            queue.decide_case(svc, other, "ban", "no", "mod-1")
        # escalate: back to the queue one severity higher, unclaimed, labelled escalated
        queue.claim_case(svc, other, "junior")
        severity = queue.get_case(svc.store, svc.pack.settings, other).severity
        queue.decide_case(svc, other, "escalate", "needs a senior", "junior")
        c = queue.get_case(svc.store, svc.pack.settings, other)
        assert c.status == "escalated" and c.severity == severity + 1 and c.claimed_by is None
        assert other in [k.id for k in queue.list_cases(svc.store, svc.pack.settings)]
        queue.decide_case(svc, other, "overturn", "registered after all", "senior")
        outcomes = [r[0] for r in rows(svc, "select outcome from case_labels where case_id = :c and kind = 'rule'",
                                       c=other)]
        assert outcomes == ["escalated", "overturned"]
        checked, findings = svc.store.verify_audit()
        assert findings == [] and checked > 0
    finally:
        svc.close()


def test_overturning_a_case_reverses_what_its_event_did(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        case_id = _report_case(svc, "victim", T0)
        assert "report-threshold" in svc.store.account_state("victim").reviews
        queue.decide_case(svc, case_id, "overturn", "a grudge, not marketing", "mod-1")
        state = svc.store.account_state("victim")
        assert state.reviews == {}  # as if the case had never been opened
        # so the next burst of reports is looked at again, not swallowed as "a case is already open"
        decide(svc, *[report(f"other-{i}", "victim", T0 + timedelta(days=1, minutes=i)) for i in range(5)])
        assert len(cases_of(svc, "victim")) == 2
        # and the reporters' overturned reports count against them
        assert svc.store.account_state("victim-r0").reporting.overturned == 1
    finally:
        svc.close()


def test_queue_over_http(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path) as api:
        svc = api.svc
        case_id = _rule_case(svc, "http-shop", T0)
        listed = api.client.get("/v1/cases", headers=api.h("moderator"))
        assert listed.status_code == 200 and [c["id"] for c in listed.json()["cases"]] == [case_id]
        assert api.client.get("/v1/cases", params={"status": "nope"}, headers=api.h("moderator")).status_code == 422
        detail = api.client.get(f"/v1/cases/{case_id}", headers=api.h("moderator")).json()
        assert detail["case"]["account"] == "http-shop" and detail["decision"]["verdict"] == "review"
        assert detail["event"]["body"]["text"] == SALE and detail["account"]["view"]["account_type"] == "subscription"
        claimed = api.client.post(f"/v1/cases/{case_id}/claim", headers=api.h("moderator"))
        assert claimed.status_code == 200 and claimed.json()["case"]["claimed_by"] == "key:test-moderator"
        other = svc.store.create_key("moderator", "other-mod")[1]
        assert api.client.post(f"/v1/cases/{case_id}/claim", headers={"X-API-Key": other}).status_code == 409
        decided = api.client.post(f"/v1/cases/{case_id}/decide", json={"decision": "uphold", "reason": "sells"},
                                  headers=api.h("moderator"))
        assert decided.status_code == 200 and decided.json()["status"] == "upheld", decided.text
        assert api.client.post(f"/v1/cases/{case_id}/decide", json={"decision": "uphold", "reason": "x"},
                               headers=api.h("admin")).status_code == 403
        assert api.client.post("/v1/cases/4242/decide", json={"decision": "uphold", "reason": "x"},
                               headers=api.h("moderator")).status_code == 404
        assert api.client.post(f"/v1/cases/{case_id}/decide", json={"decision": "maybe", "reason": "x"},
                               headers=api.h("moderator")).status_code == 422
        stats = api.client.get("/v1/rules/stats", headers=api.h("admin")).json()
        rule = next(r for r in stats["rules"] if r["rule"] == "unregistered-public-account-sale")
        assert rule["upheld"] == 1 and rule["precision"] == 1.0 and rule["hits"] == 1


def test_queue_commands(sqlite_url, tmp_path):
    from typer.testing import CliRunner

    from clearcircle.cli.main import app

    svc = open_svc(sqlite_url, tmp_path)
    try:
        case_id = _rule_case(svc, "cli-shop", T0)
    finally:
        svc.close()
    runner = CliRunner()
    db = ["--db", sqlite_url]
    listed = runner.invoke(app, ["queue", "list", "--json", *db])
    assert listed.exit_code == 0, listed.output
    assert [c["id"] for c in __import__("json").loads(listed.output)] == [case_id]
    assert runner.invoke(app, ["queue", "list", "--status", "closed", *db]).exit_code == 2
    assert runner.invoke(app, ["queue", "claim", str(case_id), "--moderator", "alice", *db]).exit_code == 0
    taken = runner.invoke(app, ["queue", "claim", str(case_id), "--moderator", "bob", *db])
    assert taken.exit_code == 1 and "claimed by" in taken.output
    assert runner.invoke(app, ["queue", "assign", str(case_id), "bob", *db]).exit_code == 0
    shown = runner.invoke(app, ["queue", "show", str(case_id), *db])
    assert shown.exit_code == 0 and "cli-shop" in shown.output
    assert runner.invoke(app, ["queue", "decide", str(case_id), "uphold", "--reason", "x", *db]).exit_code == 1
    assert runner.invoke(app, ["queue", "decide", str(case_id), "maybe", "--reason", "x", *db]).exit_code == 2
    assert runner.invoke(app, ["queue", "decide", "999", "uphold", "--reason", "x", *db]).exit_code == 1
    assert runner.invoke(app, ["queue", "assign", str(case_id), "cli:someone", *db]).exit_code == 0


def test_uphold_with_an_action_applies_it_once_as_an_appealable_event(db_url, tmp_path):
    from clearcircle.review import appeals

    svc = open_svc(db_url, tmp_path)
    try:
        case_id = _rule_case(svc, "acting", T0)
        with pytest.raises(ReviewError):
            queue.decide_case(svc, case_id, "overturn", "x", "mod-1", action="ban")
        with pytest.raises(ReviewError):
            queue.decide_case(svc, case_id, "uphold", "x", "mod-1", action="explode")
        result = queue.decide_case(svc, case_id, "uphold", "sells without registration", "key:mod-1",
                                   action="limit_reach", days=3)
        assert result["action"]["event_id"] == f"case-{case_id}-limit_reach"
        assert result["action"]["verdict"] == "limit_reach" and result["action"]["subject"] == "acting"
        again = queue.decide_case(svc, case_id, "uphold", "retry", "key:mod-1", action="limit_reach", days=3)
        assert again["changed"] is False and again["action"]["event_id"] == result["action"]["event_id"]
        assert len(rows(svc, "select id from events where type = 'moderator_action'")) == 1
        state = svc.store.account_state("acting")
        assert state.reach_limit is not None and state.reach_limit.source == f"case-{case_id}-limit_reach"
        appeal, _ = appeals.file_appeal(svc.store, "acting", f"case-{case_id}-limit_reach", "已注册", "integrator")
        appeals.decide_appeal(svc, appeal.id, "overturn", "registered offline", "mod-2")
        assert svc.store.account_state("acting").reach_limit is None
    finally:
        svc.close()


def test_an_appeal_overturning_a_cases_measure_corrects_the_reporters(db_url, tmp_path):
    from clearcircle.review import appeals

    svc = open_svc(db_url, tmp_path)
    try:
        case_id = _report_case(svc, "seller-x", T0)
        queue.decide_case(svc, case_id, "uphold", "reported counterfeit", "key:mod-1", action="limit_reach", days=3)
        reporters = [f"seller-x-r{i}" for i in range(5)]
        before = {who: svc.store.account_state(who).reporting for who in reporters}
        assert all(r.upheld == 1 and r.overturned == 0 for r in before.values())
        appeal, _ = appeals.file_appeal(svc.store, "seller-x", f"case-{case_id}-limit_reach", "正品", "integrator")
        appeals.decide_appeal(svc, appeal.id, "overturn", "invoices prove the goods genuine", "mod-2")
        after = {who: svc.store.account_state(who).reporting for who in reporters}
        # the final outcome counts: each report is now an overturned one, not an upheld one
        assert all(r.upheld == 0 and r.overturned == 1 for r in after.values())
        audit = rows(svc, "select payload from audit where kind = 'appeal_decided'")
        assert orjson.loads(audit[-1][0])["reporters_corrected"] == reporters
        checked, findings = svc.store.verify_audit()
        assert findings == [] and checked > 0
    finally:
        svc.close()
