"""The policy workbench: a changed pack (or one rule) run over the stored events without acting, compared with
what was decided, with precision from moderator labels; and the same figures live for shadow-mode rules."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from api_fixtures import open_api
from review_fixtures import INDUCED_SHARE, ORDINARY, T0, cases_of, decide, ev, open_svc, report, rows
from typer.testing import CliRunner

from clearcircle.cli.main import app
from clearcircle.policy.pack import builtin_pack_path, load_pack
from clearcircle.review import queue
from clearcircle.review.backtest import backtest
from clearcircle.review.errors import ReviewError
from clearcircle.review.stats import rule_stats

RULE_LINE = "    action: {type: limit_reach, days: 7}\n    severity: 3\n"


def changed_pack(tmp_path, *, shadow_induced: bool = True, drop_report_threshold: bool = False):
    folder = tmp_path / "changed"
    shutil.copytree(builtin_pack_path(), folder)
    if shadow_induced:
        path = folder / "rules" / "induced_sharing.yaml"
        text = path.read_text(encoding="utf-8")
        assert text.count(RULE_LINE) >= 1
        path.write_text(text.replace(RULE_LINE, RULE_LINE + "    mode: shadow\n", 1), encoding="utf-8")
    if drop_report_threshold:
        path = folder / "rules" / "feed_and_people.yaml"
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("counters.reports_received_7d >= 5", "counters.reports_received_7d >= 50"),
                        encoding="utf-8")
    return folder


def _seed(svc) -> dict[str, list[str]]:
    shares = [ev("post_created", f"u{i}", T0 + timedelta(minutes=i), id_=f"share-{i}", surface="moments",
                 text=INDUCED_SHARE) for i in range(4)]
    plain = [ev("post_created", f"u{i}", T0 + timedelta(minutes=10 + i), id_=f"plain-{i}", surface="moments",
                text=ORDINARY) for i in range(3)]
    late = [ev("post_created", "u9", T0 + timedelta(days=20), id_="share-late", surface="moments",
               text=INDUCED_SHARE)]
    reports = [report(f"r{i}", "target", T0 + timedelta(hours=1, minutes=i)) for i in range(5)]
    decide(svc, *shares, *plain, *late, *reports)
    return {"shares": [e.id for e in shares], "late": ["share-late"], "reports": [e.id for e in reports]}


def _fingerprint(svc) -> tuple:
    return (svc.store.counts(), svc.store.audit_head(),
            rows(svc, "select id, state from accounts order by id"), rows(svc, "select * from cases order by id"))


def test_backtest_shows_the_difference_without_touching_the_store(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        ids = _seed(svc)
        [case] = cases_of(svc, "target")
        queue.decide_case(svc, case.id, "overturn", "a grudge", "mod-1")
        before = _fingerprint(svc)
        same = backtest(svc.store, svc.pack, baseline=svc.pack)  # the live pack again: the replay is faithful
        assert same.events == 13 and same.changed_total == 0
        assert all(r.old_hits == r.new_hits and r.old_shadow_hits == r.new_shadow_hits for r in same.rules)
        report_ = backtest(svc.store, load_pack(changed_pack(tmp_path)), baseline=svc.pack)
        assert _fingerprint(svc) == before  # nothing written to the real store
        assert report_.events == report_.replayed == 13
        changed = {c.event_id: c for c in report_.changed}
        assert set(changed) == {*ids["shares"], *ids["late"]} and report_.changed_total == 5
        assert {(c.old_verdict, c.new_verdict) for c in changed.values()} == {("limit_reach", "allow")}
        rules = {r.rule: r for r in report_.rules}
        induced = rules["induced-share-text"]
        assert (induced.old_mode, induced.new_mode) == ("enforce", "shadow")
        assert (induced.old_hits, induced.new_hits, induced.old_shadow_hits, induced.new_shadow_hits) == (5, 0, 0, 5)
        threshold = rules["report-threshold"]
        assert threshold.old_hits == threshold.new_hits == 1
        assert (threshold.overturned, threshold.precision) == (1, 0.0)  # from the moderator's label
        assert report_.old_verdicts["limit_reach"] == 5 and "limit_reach" not in report_.new_verdicts
        # --since: only events from then on are compared (earlier ones are replayed for the counter windows)
        since = int((T0 + timedelta(days=10)).timestamp() * 1000)
        later = backtest(svc.store, load_pack(changed_pack(tmp_path / "b")), since_ms=since, baseline=svc.pack)
        assert later.events == 1 and [c.event_id for c in later.changed] == ["share-late"]
        assert _fingerprint(svc) == before
    finally:
        svc.close()


def test_one_rule_changes_alone(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        fifth = _seed(svc)["reports"][-1]
        pack = load_pack(changed_pack(tmp_path, drop_report_threshold=True))
        whole = backtest(svc.store, pack, baseline=svc.pack)
        assert {c.event_id for c in whole.changed} >= {"share-0", fifth}
        only = backtest(svc.store, pack, rule="report-threshold", baseline=svc.pack)
        assert [c.event_id for c in only.changed] == [fifth]  # the 5th report no longer reaches the threshold
        assert {r.rule: r.new_hits for r in only.rules}["induced-share-text"] == 5
        with pytest.raises(ReviewError):
            backtest(svc.store, pack, rule="no-such-rule", baseline=svc.pack)
        with pytest.raises(ReviewError):
            backtest(svc.store, pack, rule="report-threshold")
    finally:
        svc.close()


def test_shadow_rules_show_live_figures_with_precision(sqlite_url, tmp_path):
    live = changed_pack(tmp_path)  # induced-share-text in shadow mode, live
    svc = open_svc(sqlite_url, tmp_path, pack=live)
    try:
        _seed(svc)
        stats = {s.rule: s for s in rule_stats(svc.store, svc.pack)}
        shadow = stats["induced-share-text"]
        assert (shadow.mode, shadow.hits, shadow.shadow_hits, shadow.accounts) == ("shadow", 0, 5, 5)
        assert shadow.precision is None  # nothing decided yet
        # a moderator decides a case raised on one of those events: the shadow rule gets the label too
        case_id = queue.open_case(svc.store, "u0", "share-0", "rule", ["moments-contact-solicitation"], 2)
        queue.decide_case(svc, case_id, "uphold", "asks for likes for a prize", "mod-1")
        shadow = {s.rule: s for s in rule_stats(svc.store, svc.pack)}["induced-share-text"]
        assert (shadow.upheld, shadow.overturned, shadow.precision) == (1, 0, 1.0)
    finally:
        svc.close()


def test_backtest_command(sqlite_url, tmp_path):
    svc = open_svc(sqlite_url, tmp_path)
    try:
        _seed(svc)
    finally:
        svc.close()
    runner = CliRunner()
    pack = changed_pack(tmp_path)
    result = runner.invoke(app, ["backtest", "--pack", str(pack), "--db", sqlite_url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["changed_total"] == 5 and data["events"] == 13
    table = runner.invoke(app, ["backtest", "--pack", str(pack), "--db", sqlite_url, "--since",
                                "2026-03-10T00:00:00+08:00"])
    assert table.exit_code == 0 and "share-late" in table.output and "1 events compared" in table.output
    broken = tmp_path / "broken"
    shutil.copytree(pack, broken)
    (broken / "rules" / "extra.yaml").write_text("rules:\n  - id: x\n", encoding="utf-8")
    bad = runner.invoke(app, ["backtest", "--pack", str(broken), "--db", sqlite_url])
    assert bad.exit_code == 2 and "invalid policy pack" in bad.output
    assert runner.invoke(app, ["backtest", "--pack", str(pack), "--db", sqlite_url, "--since", "yesterday"]
                         ).exit_code == 2
    assert runner.invoke(app, ["backtest", "--pack", str(pack), "--db", sqlite_url, "--rule", "nope"]
                         ).exit_code == 2
    stats = runner.invoke(app, ["rules-stats", "--db", sqlite_url, "--json"])
    assert stats.exit_code == 0 and any(r["rule"] == "induced-share-text" and r["hits"] == 5
                                        for r in json.loads(stats.output))


def test_backtest_over_http(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path) as api:
        _seed(api.svc)
        folder = changed_pack(tmp_path)
        files = {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
                 for p in folder.rglob("*") if p.is_file() and p.suffix in (".yaml", ".txt")}
        done = api.client.post("/v1/backtest", json={"files": files, "rule": "induced-share-text"},
                               headers=api.h("admin"))
        assert done.status_code == 200, done.text
        assert done.json()["changed_total"] == 5
        files["rules/extra.yaml"] = "rules:\n  - id: x\n"
        bad = api.client.post("/v1/backtest", json={"files": files}, headers=api.h("admin"))
        assert bad.status_code == 422 and bad.json()["problems"]
        escape = api.client.post("/v1/backtest", json={"files": {"../x.yaml": ""}}, headers=api.h("admin"))
        assert escape.status_code == 422
