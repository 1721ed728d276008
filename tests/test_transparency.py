"""Transparency reports (S11): a month's actions by violation category, account type and action; appeals and
reversals; time to action; written as CSV, PNG charts and an HTML page, and served to compliance staff."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from api_fixtures import open_api
from review_fixtures import CST, INDUCED_SHARE, decide, ev, mod, open_svc, registered
from typer.testing import CliRunner

from clearcircle.cli.main import app
from clearcircle.review import appeals
from clearcircle.review.errors import ReviewError
from clearcircle.review.transparency import account_kind, month_window, percentile, transparency_report

MARCH = datetime(2026, 3, 5, 10, 0, tzinfo=CST)
COUNTERFEIT = "高仿名牌包包，原单质量，加微信购买"


def _march(svc) -> None:
    decide(svc, *[registered(a, MARCH - timedelta(days=60), "subscription") for a in ("pub-1", "pub-2")],
           registered("svc-1", MARCH - timedelta(days=60), "service"),
           *[registered(f"p-{i}", MARCH - timedelta(days=60)) for i in range(1, 8)])
    decide(svc, mod("ban", "pub-1", MARCH), mod("ban", "pub-2", MARCH),
           *[mod("ban", f"p-{i}", MARCH + timedelta(hours=i), id_=f"ban-p-{i}") for i in (1, 2, 3)],
           mod("suspend", "svc-1", MARCH, duration_days=7),
           ev("post_created", "p-4", MARCH, surface="moments", text=INDUCED_SHARE),
           ev("post_created", "p-5", MARCH, surface="moments", text=COUNTERFEIT),
           # the last half hour of March in Shanghai is March; half an hour later is April (16:30 UTC on the 31st)
           mod("ban", "p-6", datetime(2026, 4, 1, 0, 30, tzinfo=CST)),
           mod("ban", "p-7", datetime(2026, 3, 31, 23, 30, tzinfo=CST)))
    appeal, _ = appeals.file_appeal(svc.store, "p-3", "ban-p-3", "账号被盗", "integrator")
    appeals.decide_appeal(svc, appeal.id, "overturn", "account was stolen", "mod-2")
    other, _ = appeals.file_appeal(svc.store, "p-2", "ban-p-2", "误封", "integrator")
    appeals.decide_appeal(svc, other.id, "uphold", "spam confirmed", "mod-2")


def test_month_counts_by_category_account_type_and_action(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        _march(svc)
        r = transparency_report(svc.store, svc.pack, "2026-03")
        assert r.accounts[("public", "ban")] == 2 and r.accounts[("personal", "ban")] == 4
        assert ("personal", "ban") in r.accounts and r.accounts[("public", "suspend")] == 1
        assert r.actions[("moderator", "public", "ban")] == 2
        assert r.actions[("moderator", "personal", "ban")] == 4
        assert r.actions[("induced_share", "personal", "limit_reach")] == 1
        assert r.actions[("counterfeit", "personal", "remove")] == 1
        assert r.by(1) == {"personal": 6, "public": 3}
        assert r.appeals == {"filed": 2, "open": 0, "upheld": 1, "overturned": 1, "decided": 2}
        assert r.reversals == 1
        tta = r.time_to_action_ms
        assert tta["count"] == 9 and 0 <= tta["median"] <= tta["p90"]
        april = transparency_report(svc.store, svc.pack, "2026-04")
        assert april.accounts == {("personal", "ban"): 1} and april.appeals["filed"] == 0
    finally:
        svc.close()


def test_outputs_csv_png_html(sqlite_url, tmp_path):
    svc = open_svc(sqlite_url, tmp_path)
    try:
        _march(svc)
        report = transparency_report(svc.store, svc.pack, "2026-03")
        written = report.write(tmp_path / "out")
    finally:
        svc.close()
    names = {p.name for p in written}
    assert {"actions.csv", "summary.csv", "report.html", "actions_by_category.png", "actions_by_account_type.png",
            "appeals.png"} == names
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "actions.csv").read_text(encoding="utf-8"))))
    assert {"category": "moderator", "account_type": "public", "action": "ban", "count": "2"} in rows
    assert sum(int(r["count"]) for r in rows) == 9
    summary = dict(csv.reader(io.StringIO((tmp_path / "out" / "summary.csv").read_text(encoding="utf-8"))))
    assert summary["accounts_public_ban"] == "2" and summary["accounts_personal_ban"] == "4"
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Transparency report: 2026-03" in html and 'src="actions_by_category.png"' in html
    inline = report.html()
    assert inline.count("data:image/png;base64,") == 3


def test_report_command_and_routes(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path) as api:
        _march(api.svc)
        api.keys["compliance"] = api.svc.store.create_key("compliance", "c")[1]
        got = api.client.get("/v1/reports/transparency", params={"month": "2026-03"}, headers=api.h("compliance"))
        assert got.status_code == 200 and got.json()["by_account_type"] == {"personal": 6, "public": 3}
        page = api.client.get("/v1/reports/transparency.html", params={"month": "2026-03"},
                              headers=api.h("compliance"))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "data:image/png;base64," in page.text
        assert api.client.get("/v1/reports/transparency", params={"month": "March"},
                              headers=api.h("compliance")).status_code == 422
        assert api.client.get("/v1/reports/transparency", params={"month": "2026-13"},
                              headers=api.h("compliance")).status_code == 422
        assert api.client.get("/v1/reports/transparency", params={"month": "2026-03"},
                              headers=api.h("moderator")).status_code == 403
    runner = CliRunner()
    out = tmp_path / "cli-out"
    result = runner.invoke(app, ["report", "--month", "2026-03", "--out", str(out), "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "accounts banned: public 2, personal 4" in result.output and (out / "report.html").is_file()
    assert runner.invoke(app, ["report", "--month", "2026-3x", "--db", sqlite_url]).exit_code == 2


def test_helpers():
    assert account_kind("subscription") == account_kind("service") == "public"
    assert account_kind("personal") == "personal" and account_kind(None) == "unknown"
    assert percentile([], 0.5) is None
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == pytest.approx(9.1)
    from clearcircle.policy.pack import builtin_pack_path, load_pack

    pack = load_pack(builtin_pack_path())
    start, end = month_window("2026-03", pack)
    assert datetime.fromtimestamp(start / 1000, CST) == datetime(2026, 3, 1, tzinfo=CST)
    assert datetime.fromtimestamp(end / 1000, CST) == datetime(2026, 4, 1, tzinfo=CST)
    with pytest.raises(ReviewError):
        month_window("2026-13", pack)
