"""Reports (S14) and buyer complaints (S5): dedup per reporter and target, reputation learned from moderator
decisions, escalation by the weight of distinct reporters, and no restriction from a mass report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from review_fixtures import ORDINARY, T0, cases_of, decide, ev, open_svc, registered, report

from clearcircle.policy.rules import ReportSettings
from clearcircle.review import queue
from clearcircle.review.reputation import age_factor, reputation, weight_of

MEASURES = {"label", "limit_reach", "restrict", "suspend", "ban", "strike"}


def test_reputation_starts_low_and_follows_decisions():
    s = ReportSettings()
    fresh = reputation(None, s)
    assert fresh == pytest.approx(s.prior_upheld / (s.prior_upheld + s.prior_overturned))
    from clearcircle.enforcement.state import ReporterRecord

    trusted = reputation(ReporterRecord(upheld=8), s)
    wrong = reputation(ReporterRecord(overturned=8), s)
    assert wrong < fresh < trusted < 1
    # young accounts weigh in proportion to age, never below the floor; established ones fully
    assert age_factor(0, s) == s.min_age_factor and age_factor(None, s) == s.min_age_factor
    assert age_factor(s.full_weight_age_days / 2, s) == pytest.approx(0.5)
    assert age_factor(400, s) == 1.0
    assert weight_of(None, 0, s) < weight_of(None, 400, s) < weight_of(ReporterRecord(upheld=8), 400, s)


def test_coordinated_mass_report_by_fresh_accounts_never_restricts(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        decide(svc, registered("bakery", T0 - timedelta(days=300)))
        socks = [registered(f"sock-{i}", T0 + timedelta(seconds=i)) for i in range(60)]
        decide(svc, *socks)
        ds = decide(svc, *[report(f"sock-{i}", "bakery", T0 + timedelta(minutes=10, seconds=i), "counterfeit")
                           for i in range(60)])
        for d in ds:
            assert d["verdict"] in ("allow", "review")
            assert not {a["action"] for a in d["actions"]} & MEASURES
            assert "report-escalation" not in d["rules"]
        # 60 distinct reporters, but each weighs the fresh floor: far below the escalation weight
        last = ds[-1]["signals"]
        assert last["reports.reporters_7d"] == 60
        settings = svc.pack.settings.reports
        assert last["reports.weight_7d"] == pytest.approx(60 * weight_of(None, 0, settings), abs=1e-4)
        assert last["reports.weight_7d"] < settings.escalate_weight
        state = svc.store.account_state("bakery")
        view = state.view(int((T0 + timedelta(hours=1)).timestamp() * 1000))
        assert not (view.banned or view.suspended or view.reach_limited or view.restrictions or view.labels)
        assert view.strikes == 0
        # even a moderator upholding the (raw-count) case against it does not act by itself
        case_ids = [c.id for c in cases_of(svc, "bakery")]
        assert len(case_ids) == 1 and cases_of(svc, "bakery")[0].source == "report"
        assert decide(svc, ev("post_created", "bakery", T0 + timedelta(hours=2), surface="moments",
                              text=ORDINARY))[0]["verdict"] == "allow"
    finally:
        svc.close()


def test_reports_are_deduplicated_per_reporter_and_target(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        decide(svc, registered("grudge", T0 - timedelta(days=200)))
        ds = decide(svc, *[report("grudge", "shop", T0 + timedelta(minutes=i)) for i in range(10)])
        assert {d["signals"]["reports.reporters_7d"] for d in ds} == {1}
        assert all("reports.weight_7d" not in d["signals"] for d in ds)  # one reporter alone never escalates
        marks = svc.store.account_state("shop").reports
        assert set(marks) == {"grudge"} and marks["grudge"].event_id == ds[-1]["event_id"]  # the latest stands
        # reporting someone else is counted for them alone; reporting oneself records nothing
        other = decide(svc, report("grudge", "other-shop", T0 + timedelta(minutes=20)))[0]
        assert other["signals"]["reports.reporters_7d"] == 1
        decide(svc, report("grudge", "grudge", T0 + timedelta(minutes=30)))
        assert svc.store.account_state("grudge").reports == {}
        # a second reporter adds their own weight once, however often they report
        two = decide(svc, *[report("neighbour", "shop", T0 + timedelta(minutes=40 + i)) for i in range(3)])
        assert {d["signals"]["reports.reporters_7d"] for d in two} == {2}
        assert len({d["signals"]["reports.weight_7d"] for d in two}) == 1
        # a banned account's reports weigh nothing
        decide(svc, ev("moderator_action", "mod-1", T0 + timedelta(minutes=50), target="neighbour", action="ban",
                       reason="spam"))
        decide(svc, report("neighbour", "shop", T0 + timedelta(minutes=55)))
        assert svc.store.account_state("shop").reports["neighbour"].weight == 0.0
        # a week later the old reports no longer count
        later = decide(svc, report("newcomer", "shop", T0 + timedelta(days=8)))[0]
        assert later["signals"]["reports.reporters_7d"] == 1
    finally:
        svc.close()


def _round(svc, reporters: list[str], target: str, at, decision: str) -> None:
    """The reporters report a target together (five: the raw-count rule opens a case) and a moderator decides."""
    decide(svc, *[report(r, target, at + timedelta(minutes=i)) for i, r in enumerate(reporters)])
    for case in [c for c in cases_of(svc, target) if c.status == "open"]:
        queue.decide_case(svc, case.id, decision, "checked the posts", "mod-1")


def test_reporters_with_upheld_reports_escalate_a_target(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        good = [f"good-{i}" for i in range(5)]
        bad = [f"bad-{i}" for i in range(5)]
        decide(svc, *[registered(a, T0 - timedelta(days=365)) for a in good + bad])
        for n in range(6):  # six rounds: the good reporters are upheld, the bad ones overturned
            at = T0 + timedelta(days=n)
            _round(svc, good, f"spammer-{n}", at, "uphold")
            _round(svc, bad, f"rival-{n}", at + timedelta(hours=1), "overturn")
        assert svc.store.account_state("good-0").reporting.upheld == 6
        assert svc.store.account_state("bad-0").reporting.overturned == 6
        at = T0 + timedelta(days=10)
        trusted = decide(svc, *[report(r, "new-spammer", at + timedelta(minutes=i)) for i, r in enumerate(good)])
        distrusted = decide(svc, *[report(r, "honest-shop", at + timedelta(minutes=i)) for i, r in enumerate(bad)])
        assert "report-escalation" in trusted[-1]["rules"]
        assert trusted[-1]["signals"]["reports.weight_7d"] >= svc.pack.settings.reports.escalate_weight
        assert "report-escalation" not in distrusted[-1]["rules"]
        assert distrusted[-1]["signals"]["reports.weight_7d"] < trusted[-1]["signals"]["reports.weight_7d"] / 5
        escalated = [c for c in cases_of(svc, "new-spammer") if "report-escalation" in c.rules]
        assert len(escalated) == 1 and escalated[0].source == "report"
        # a report is judged once, by the first decision that covers it
        assert svc.store.account_state("good-0").reporting.upheld == 6
    finally:
        svc.close()


def test_buyer_complaints_weighted_open_a_case_on_the_seller(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        buyers = [f"buyer-{i}" for i in range(3)]
        decide(svc, *[registered(b, T0 - timedelta(days=200)) for b in buyers])
        ds = decide(svc, *[ev("buyer_complaint", b, T0 + timedelta(hours=i), seller="daigou", reason="counterfeit",
                              amount=299.0) for i, b in enumerate(buyers)])
        assert [d["signals"]["counters.complaints_received_30d"] for d in ds] == [1, 2, 3]
        assert ds[-1]["rules"] == ["seller-complaints"] and ds[-1]["verdict"] == "review"
        [case] = cases_of(svc, "daigou")
        assert case.source == "complaint"
        # three buyers from accounts made minutes ago weigh too little to open a case by themselves
        fresh = [f"new-buyer-{i}" for i in range(3)]
        decide(svc, *[registered(b, T0) for b in fresh])
        ds = decide(svc, *[ev("buyer_complaint", b, T0 + timedelta(minutes=5 + i), seller="rival-shop",
                              reason="not_delivered") for i, b in enumerate(fresh)])
        assert ds[-1]["signals"]["counters.complaints_received_30d"] == 3 and ds[-1]["rules"] == []
        assert ds[-1]["signals"]["complaints.weight_30d"] < ds[-1]["signals"]["complaints.escalate_weight"]
        assert cases_of(svc, "rival-shop") == []
    finally:
        svc.close()
