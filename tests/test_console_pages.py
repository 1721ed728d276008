"""The moderator console without a browser: login and sessions, the role of every page, CSRF, and what each page
shows, over the real app (TestClient) with data seeded through the real pipeline.

`seed_console(service)` and `login_form_token` are shared with tests/test_console_e2e.py.
"""

from __future__ import annotations

import base64
import html
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_fixtures import open_api

from clearcircle.console import page_roles
from clearcircle.console.views import field_text, highlight, segments
from clearcircle.events.schemas import parse_event
from clearcircle.policy.campaigns import parse_campaign
from clearcircle.service import Service

MODERATORS = frozenset({"moderator", "admin"})
STAFF = frozenset({"moderator", "admin", "compliance"})
COMPLIANCE = frozenset({"compliance"})
OPEN: frozenset[str] = frozenset()

# (method, path) -> roles: the console's own role table, checked against what the routes declare.
CONSOLE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/"): OPEN,
    ("GET", "/login"): OPEN,
    ("POST", "/login"): OPEN,
    ("POST", "/logout"): OPEN,
    ("GET", "/queue"): MODERATORS,
    ("GET", "/cases/{case_id}"): MODERATORS,
    ("POST", "/cases/{case_id}/claim"): MODERATORS,
    ("POST", "/cases/{case_id}/decide"): MODERATORS,
    ("GET", "/appeals/{appeal_id}"): MODERATORS,
    ("POST", "/appeals/{appeal_id}/decide"): MODERATORS,
    ("GET", "/accounts"): MODERATORS,
    ("GET", "/accounts/{account_id:path}"): MODERATORS,
    ("GET", "/rules"): STAFF,
    ("GET", "/merchants"): STAFF,
    ("POST", "/merchants/{account_id:path}/{step}"): COMPLIANCE,
    ("GET", "/campaigns"): STAFF,
    ("POST", "/campaigns/{name}/end"): frozenset({"admin", "compliance"}),
    ("GET", "/reports"): STAFF,
    ("GET", "/reports/{month}/page"): STAFF,
}

SPAMMER = "u-downline"
POST_TEXT = "转发到朋友圈集满30个赞送面膜！加入我们发展下线，在家躺赚。"
CREDIT_CODE = "91110000600037341L"
LICENCE = "JY13101010000000"


def png_base64() -> str:
    """A small real PNG (the media signals decode it; the case page shows it)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (96, 64), (240, 200, 60))
    ImageDraw.Draw(img).rectangle((10, 10, 80, 50), fill=(200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def seed_console(service: Service) -> dict[str, Any]:
    """Through the real pipeline: an account whose post both limits its reach (induced-share-text) and opens a
    review case (mlm-recruiting-text), a plain post, a post whose image cannot be read (a shadow rule's hit), a
    merchant application and a campaign. Events are stamped
    minutes ago, so the 7-day reach limit is active now."""
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

    def ev(id_: str, type_: str, actor: str, minutes: int, **body: Any) -> Any:
        return parse_event({"id": id_, "type": type_, "occurred_at": (at + timedelta(minutes=minutes)).isoformat(),
                            "actor": actor, "body": body})

    outcomes = service.pipeline.submit([
        ev("reg-spammer", "account_registered", SPAMMER, 0, account_type="personal", display_name="小李"),
        ev("post-spam", "post_created", SPAMMER, 1, surface="moments", text=POST_TEXT,
           images=[{"data_base64": png_base64()}]),
        ev("post-plain", "post_created", "u-neighbour", 2, surface="moments", text="今天和家人去公园散步，天气很好。"),
        ev("post-blurry", "post_created", "u-neighbour", 3, surface="moments", text="看看这张图",
           images=[{"data_base64": base64.b64encode(b"not an image at all").decode()}]),
        ev("app-shop", "merchant_application", "m-shop", 3, company_name="上海某某食品有限公司",
           credit_code=CREDIT_CODE, food_licence=LICENCE, categories=["food"]),
    ])
    spam = outcomes[1].decision
    assert {"induced-share-text", "mlm-recruiting-text"} <= set(spam["rules"]), spam
    spec = parse_campaign({"name": "spring-cleanup", "starts_at": "2031-03-01T00:00:00+08:00",
                           "ends_at": "2031-04-01T00:00:00+08:00",
                           "overrides": {"follow-burst": {"mode": "enforce"}}}, service.pack, service.pipeline.registry)
    service.store.campaign_save(spec.wire(), spec.starts_ms, spec.ends_ms, "seed")
    return {"account": SPAMMER, "event": "post-spam", "decision": spam}


def login_form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the form"
    return match.group(1)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("console")
    with open_api(f"sqlite:///{tmp / 'console.db'}", tmp) as a:
        a.keys["compliance"] = a.svc.store.create_key("compliance", "test-compliance")[1]
        a.seeded = seed_console(a.svc)
        yield a


@pytest.fixture
def client(api):
    """The module's app with an empty cookie jar (each test logs in as it needs)."""
    api.client.cookies.clear()
    return api.client


def login(client: Any, key: str, next_: str = "") -> Any:
    token = login_form_token(client.get("/console/login").text)
    return client.post("/console/login", data={"key": key, "csrf_token": token, "next": next_},
                       follow_redirects=False)


def csrf_of(client: Any, path: str = "/console/rules") -> str:
    return login_form_token(client.get(path).text)


def case_id(api) -> int:
    from clearcircle import review

    cases = review.list_cases(api.svc.store, api.svc.pack.settings, account=SPAMMER,
                              status=("open", "escalated", "upheld", "overturned"))
    assert cases, "the seeded post opened no case"
    return cases[0].id


# -- login, sessions, roles ------------------------------------------------------------------------------------


def test_routes_declare_exactly_the_role_table(api):
    console = next(r.app for r in api.client.app.routes if getattr(r, "path", "") == "/console")
    assert page_roles(console) == CONSOLE_ROLES


def test_login_sets_a_signed_httponly_strict_cookie_and_goes_home(api, client):
    response = login(client, api.keys["moderator"])
    assert response.status_code == 303
    assert response.headers["location"] == "/console/queue"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert api.keys["moderator"] not in response.headers["set-cookie"], "the key itself must not be in the cookie"
    page = client.get("/console/queue")
    assert page.status_code == 200 and "test-moderator · moderator" in page.text


def test_compliance_lands_on_the_registry(api, client):
    assert login(client, api.keys["compliance"]).headers["location"] == "/console/merchants"


@pytest.mark.parametrize("role", ["integrator"])
def test_a_role_without_console_pages_cannot_log_in(api, client, role):
    response = login(client, api.keys[role])
    assert response.status_code == 403
    assert "cannot use the console" in response.text
    assert client.get("/console/queue", follow_redirects=False).status_code == 303


def test_unknown_key_is_refused(client):
    response = login(client, "cc_000000000000_not-a-key")
    assert response.status_code == 401 and "Unknown or revoked" in response.text


def test_login_without_the_form_token_is_refused(api, client):
    client.get("/console/login")
    response = client.post("/console/login", data={"key": api.keys["moderator"]}, follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/console/queue", follow_redirects=False).status_code == 303


def test_no_session_redirects_to_login_with_the_page_to_return_to(api, client):
    response = client.get("/console/accounts/u-downline", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/accounts/u-downline"
    assert login(client, api.keys["moderator"], "/console/accounts/u-downline").headers["location"] == \
        "/console/accounts/u-downline"


def test_login_never_redirects_off_the_console(api, client):
    for target in ("https://evil.example/", "//evil.example/x", "/v1/policy"):
        assert login(client, api.keys["moderator"], target).headers["location"] == "/console/queue"


def test_htmx_request_without_session_gets_hx_redirect(client):
    response = client.post("/console/cases/1/claim", headers={"HX-Request": "true"}, follow_redirects=False)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/console/login"


GET_PAGES = [(path, roles) for (method, path), roles in CONSOLE_ROLES.items() if method == "GET" and roles]


def _concrete(path: str, api) -> str:
    return (path.replace("{case_id}", str(case_id(api))).replace("{account_id:path}", SPAMMER)
            .replace("{month}", "2026-03").replace("{appeal_id}", "999999"))


@pytest.mark.parametrize("role", ["moderator", "admin", "compliance"])
@pytest.mark.parametrize(("path", "roles"), GET_PAGES, ids=[p for p, _ in GET_PAGES])
def test_each_page_admits_exactly_its_roles(api, client, role, path, roles):
    assert login(client, api.keys[role]).status_code == 303
    response = client.get("/console" + _concrete(path, api), follow_redirects=False)
    if role in roles:
        # an unknown appeal is a 404 page; everything else seeded renders
        assert response.status_code == (404 if "{appeal_id}" in path else 200), response.text[:500]
    else:
        assert response.status_code == 403
        assert f"role {role!r} may not open this page" in html.unescape(response.text)


def test_revoking_the_key_ends_its_session(api, client):
    key, secret = api.svc.store.create_key("moderator", "short-lived")
    assert login(client, secret).status_code == 303
    assert client.get("/console/queue").status_code == 200
    assert api.svc.store.revoke_key(key.id)
    assert client.get("/console/queue", follow_redirects=False).status_code == 303


def test_logout_needs_the_token_and_ends_the_session(api, client):
    login(client, api.keys["moderator"])
    assert client.post("/console/logout", follow_redirects=False).status_code == 403
    token = csrf_of(client)
    assert client.post("/console/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/console/queue", follow_redirects=False).status_code == 303


def test_pages_send_security_headers(api, client):
    login(client, api.keys["moderator"])
    headers = client.get("/console/queue").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_htmx_is_served_from_the_package(client):
    response = client.get("/console/static/htmx-2.0.11.min.js")
    assert response.status_code == 200 and "htmx" in response.text[:200]


# -- queue, case, decisions ------------------------------------------------------------------------------------


def test_queue_lists_the_case_with_priority_and_sla(api, client):
    login(client, api.keys["moderator"])
    page = client.get("/console/queue").text
    row = re.search(rf'<tr id="case-{case_id(api)}".*?</tr>', page, re.S)
    assert row, page
    assert SPAMMER in row.group(0) and "mlm-recruiting-text" in row.group(0)
    assert 'data-testid="claim"' in row.group(0)


def test_case_page_marks_the_evidence_in_the_original_text_and_shows_the_image(api, client):
    login(client, api.keys["moderator"])
    page = client.get(f"/console/cases/{case_id(api)}").text
    marks = re.findall(r"<mark[^>]*>(.*?)</mark>", page)
    evidence = {e["text"] for e in api.seeded["decision"]["evidence"] if e.get("signal") == "text.evidence"}
    assert "发展下线" in marks and "躺赚" in marks
    assert all(any(e in m for m in marks) for e in evidence)
    assert POST_TEXT.replace("发展下线", "").split("，")[0][:3] in page  # unmarked text is shown too
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)
    assert 'data-testid="reach"><span class="bad">limited' in page  # the account's state now


def test_claim_and_decide_need_the_form_token(api, client):
    login(client, api.keys["moderator"])
    cid = case_id(api)
    assert client.post(f"/console/cases/{cid}/claim").status_code == 403
    assert client.post(f"/console/cases/{cid}/decide", data={"decision": "overturn", "reason": "x"}).status_code \
        == 403
    from clearcircle import review

    case = review.get_case(api.svc.store, api.svc.pack.settings, cid)
    assert case.claimed_by is None and case.status == "open"


def test_bad_decision_is_a_422_page(api, client):
    login(client, api.keys["admin"])
    token = csrf_of(client)
    response = client.post(f"/console/cases/{case_id(api)}/decide",
                           data={"decision": "delete", "reason": "x", "csrf_token": token})
    assert response.status_code == 422 and "decision" in response.text
    missing = client.post(f"/console/cases/{case_id(api)}/decide", data={"decision": "uphold", "csrf_token": token})
    assert missing.status_code == 422 and "reason" in missing.text


def test_unknown_case_is_a_404_page(api, client):
    login(client, api.keys["moderator"])
    response = client.get("/console/cases/987654")
    assert response.status_code == 404 and "no case 987654" in response.text


def test_claim_then_overturn_restores_the_account(api, client):
    """The whole moderator step without a browser: claim (htmx row swap), overturn, the account page."""
    login(client, api.keys["moderator"])
    cid = case_id(api)
    token = csrf_of(client)
    row = client.post(f"/console/cases/{cid}/claim", headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert row.status_code == 200 and row.text.lstrip().startswith(f'<tr id="case-{cid}"')
    assert "<strong>you</strong>" in row.text
    before = client.get(f"/console/accounts/{SPAMMER}").text
    assert 'data-testid="reach"><span class="bad">limited' in before
    done = client.post(f"/console/cases/{cid}/decide",
                       data={"decision": "overturn", "reason": "a legitimate shop promotion", "csrf_token": token},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/console/cases/{cid}"
    case_page = client.get(f"/console/cases/{cid}").text
    assert 'data-testid="case-status">overturned' in case_page
    assert "a legitimate shop promotion" in case_page
    after = client.get(f"/console/accounts/{SPAMMER}").text
    assert 'data-testid="reach">normal' in after
    assert 'data-testid="strikes">0' in after
    assert "case decided" in after  # the timeline shows the decision
    assert f'id="case-{cid}"' not in client.get("/console/queue").text
    rules = client.get("/console/rules").text
    row = re.search(r'<tr data-rule="mlm-recruiting-text">.*?</tr>', rules, re.S)
    assert row and 'data-testid="precision">0%' in row.group(0)  # one overturned label


# -- the other pages -------------------------------------------------------------------------------------------


def test_rules_page_counts_hits_from_stored_decisions_and_draws_them(api, client):
    login(client, api.keys["compliance"])
    page = client.get("/console/rules").text
    row = re.search(r'<tr data-rule="induced-share-text">(.*?)</tr>', page, re.S)
    assert row, page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert cells[3] == "1"  # one seeded post hit it
    assert '<svg class="chart"' in page and "induced-share-text: 1 enforced" in page
    shadow = re.search(r'<tr data-rule="media-unreadable-image">(.*?)</tr>', page, re.S)
    assert shadow and re.findall(r"<td[^>]*>(.*?)</td>", shadow.group(1), re.S)[1:5] == ["shadow", "unreadable_media",
                                                                                       "0", "1"]
    assert "media-unreadable-image: 1 shadow" in page


def test_merchant_registry_page_and_compliance_steps(api, client):
    login(client, api.keys["moderator"])
    page = client.get("/console/merchants").text
    assert "上海某某食品有限公司" in page and "pending" in page
    assert "Verify</button>" not in page  # a moderator reads, does not act
    token = csrf_of(client)
    refused = client.post("/console/merchants/m-shop/verify", data={"csrf_token": token,
                                                                    "licence_expires": "2031-01-01"})
    assert refused.status_code == 403
    client.cookies.clear()
    login(client, api.keys["compliance"])
    token = csrf_of(client, "/console/merchants")
    bad = client.post("/console/merchants/m-shop/verify", data={"csrf_token": token, "licence_expires": "soon"})
    assert bad.status_code == 422
    done = client.post("/console/merchants/m-shop/verify", data={"csrf_token": token,
                                                                 "licence_expires": "2031-01-01"})
    assert done.status_code == 200 and 'data-testid="flash">m-shop: verified' in done.text
    assert api.svc.store.merchant("m-shop").status == "verified"
    assert client.get("/console/merchants?state=bogus").status_code == 422


def test_campaigns_page_and_ending_one(api, client):
    login(client, api.keys["moderator"])
    page = client.get("/console/campaigns").text
    assert "spring-cleanup" in page and "scheduled" in page and "<code>follow-burst</code>:" in page
    assert "mode <code>enforce</code>" in page and 'data-testid="end-campaign"' not in page
    token = csrf_of(client)
    assert client.post("/console/campaigns/spring-cleanup/end", data={"csrf_token": token}).status_code == 403
    client.cookies.clear()
    login(client, api.keys["compliance"])
    token = csrf_of(client, "/console/campaigns")
    assert client.post("/console/campaigns/no-such/end", data={"csrf_token": token}).status_code == 404
    ended = client.post("/console/campaigns/spring-cleanup/end", data={"csrf_token": token})
    assert ended.status_code == 200 and "Campaign spring-cleanup: ended" in ended.text
    assert api.svc.store.campaign("spring-cleanup")["ended_ms"] is not None
    assert "ended by console:test-compliance#" in ended.text  # the history names who


def test_reports_page_frames_the_core_report(api, client):
    login(client, api.keys["compliance"])
    page = client.get("/console/reports?month=2026-03")
    assert page.status_code == 200 and 'src="/console/reports/2026-03/page"' in page.text
    assert client.get("/console/reports?month=2026-13").status_code == 422
    report = client.get("/console/reports/2026-03/page")
    assert report.status_code == 200 and "<html" in report.text.lower()


# -- views: highlighting -------------------------------------------------------------------------------------


def test_segments_mark_overlaps_and_clip_bad_spans():
    text = "转发到朋友圈集满30个赞"
    segs = segments(text, [(3, 8, "induced_share"), (6, 8, "induced_share"), (50, 60, "x"), (-5, 1, "y")])
    assert "".join(s.text for s in segs) == text  # nothing lost, nothing doubled
    marked = [(s.text, s.categories) for s in segs if s.marked]
    assert marked == [("转", ("y",)), ("朋友圈集满", ("induced_share",))]


def test_highlight_finds_fields_by_path():
    payload = {"body": {"text": "hello", "links": [{"url": "u", "landing_text": "buy now"}]}}
    assert field_text(payload, "body.links.0.landing_text") == "buy now"
    assert field_text(payload, "body.links.3.landing_text") is None
    shown = highlight(payload, [{"signal": "text.evidence", "field": "body.links.0.landing_text", "span": [0, 3],
                                 "category": "commercial"}])
    assert [h.field for h in shown] == ["body.text", "body.links.0.landing_text"]
    assert shown[1].segments[0].text == "buy" and shown[1].segments[0].marked


def test_appeal_page_overturn_lifts_the_appealed_measure(api, client):
    """An owner's appeal (filed through the core, as the API does) decided from the console."""
    from clearcircle import review

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    done = api.svc.pipeline.submit([parse_event({
        "id": "post-appealed", "type": "post_created", "occurred_at": at.isoformat(), "actor": "u-appellant",
        "body": {"surface": "moments", "text": "转发到朋友圈集满30个赞送面膜"}})])
    assert "induced-share-text" in done[0].decision["rules"]
    appeal, _ = review.file_appeal(api.svc.store, "u-appellant", "post-appealed", "我只是分享活动", "owner")
    login(client, api.keys["moderator"])
    assert f'href="/console/appeals/{appeal.id}"' in client.get("/console/queue").text
    page = client.get(f"/console/appeals/{appeal.id}").text
    assert "我只是分享活动" in page and "limit_reach" in page
    assert 'data-testid="reach"><span class="bad">limited' in page
    token = login_form_token(page)
    decided = client.post(f"/console/appeals/{appeal.id}/decide",
                          data={"decision": "overturn", "reason": "a one-off, not a campaign", "csrf_token": token})
    assert decided.status_code == 200
    assert 'data-testid="appeal-status">overturned' in decided.text and 'data-testid="reach">normal' in decided.text
    again = client.post(f"/console/appeals/{appeal.id}/decide",
                        data={"decision": "uphold", "reason": "changed my mind", "csrf_token": token})
    assert again.status_code == 409


def test_a_case_claimed_by_another_moderator_is_a_409_page(api, client):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    api.svc.pipeline.submit([parse_event({
        "id": "post-recruit", "type": "post_created", "occurred_at": at.isoformat(), "actor": "u-recruiter",
        "body": {"surface": "moments", "text": "加入我们发展下线，在家躺赚"}})])
    from clearcircle import review

    cid = review.list_cases(api.svc.store, api.svc.pack.settings, account="u-recruiter")[0].id
    login(client, api.keys["moderator"])
    token = csrf_of(client)
    assert client.post(f"/console/cases/{cid}/claim", data={"csrf_token": token}).status_code == 200
    client.cookies.clear()
    login(client, api.keys["admin"])
    token = csrf_of(client)
    taken = client.post(f"/console/cases/{cid}/claim", headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert taken.status_code == 409 and "claimed by" in html.unescape(taken.text)
    assert taken.text.startswith('<p class="error"')  # an htmx fragment, not a whole page
    refused = client.post(f"/console/cases/{cid}/decide", data={"decision": "uphold", "reason": "x",
                                                                 "csrf_token": token})
    assert refused.status_code == 409
    assert review.get_case(api.svc.store, api.svc.pack.settings, cid).status == "open"


def test_escalate_sends_the_case_back_to_the_queue_one_severity_higher(api, client):
    from clearcircle import review

    case = review.list_cases(api.svc.store, api.svc.pack.settings, account="u-recruiter")[0]
    login(client, api.keys["moderator"])  # the moderator who claimed it in the test above
    token = csrf_of(client)
    done = client.post(f"/console/cases/{case.id}/decide",
                       data={"decision": "escalate", "reason": "needs a senior look", "csrf_token": token})
    assert done.status_code == 200 and 'data-testid="case-status">escalated' in done.text
    row = re.search(rf'<tr id="case-{case.id}".*?</tr>', client.get("/console/queue").text, re.S)
    assert row and f'<td class="num">{case.severity + 1}</td>' in row.group(0)
    assert 'data-testid="claim"' in row.group(0)  # unclaimed again


def test_uphold_with_a_measure_applies_it_through_the_core(api, client):
    from clearcircle import review

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    api.svc.pipeline.submit([parse_event({
        "id": "post-upline", "type": "post_created", "occurred_at": at.isoformat(), "actor": "u-upline",
        "body": {"surface": "moments", "text": "加入我们发展下线，在家躺赚"}})])
    cid = review.list_cases(api.svc.store, api.svc.pack.settings, account="u-upline")[0].id
    login(client, api.keys["moderator"])
    page = client.get(f"/console/cases/{cid}").text
    assert '<option value="suspend">suspend</option>' in page
    token = login_form_token(page)
    bad = client.post(f"/console/cases/{cid}/decide", data={"decision": "uphold", "reason": "recruiting",
                                                            "action": "suspend", "days": "x", "csrf_token": token})
    assert bad.status_code == 422 and "days" in bad.text
    done = client.post(f"/console/cases/{cid}/decide", data={"decision": "uphold", "reason": "recruiting",
                                                             "action": "suspend", "days": "3", "csrf_token": token})
    assert done.status_code == 200 and "applied suspend" in done.text
    account = client.get("/console/accounts/u-upline").text
    assert re.search(r"<dt>Suspended</dt><dd><span class=\"bad\">until ", account)


@pytest.mark.parametrize("path", ["/console/cases/abc", "/console/rules?days=0", "/console/appeals/-x",
                                  "/console/merchants?state=%00", "/console/accounts/nobody-at-all"])
def test_bad_input_is_a_4xx_page(api, client, path):
    login(client, api.keys["admin"])
    response = client.get(path)
    assert 400 <= response.status_code < 500 and "<html" in response.text


def test_https_only_marks_the_cookie_secure(api):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from clearcircle.console import mount

    app = FastAPI()
    mount(app, api.svc, https_only=True)
    with TestClient(app, base_url="https://testserver") as secure:
        token = login_form_token(secure.get("/console/login").text)
        response = secure.post("/console/login", data={"key": api.keys["moderator"], "csrf_token": token},
                               follow_redirects=False)
    assert response.status_code == 303 and "secure" in response.headers["set-cookie"].lower()
