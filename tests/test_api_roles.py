"""Every API route admits exactly the roles in ROUTE_ROLES; no key, an unknown key or a revoked key is 401.

A new route fails `test_every_route_is_in_the_table` until it is added to ROUTE_ROLES (and, if it takes
path parameters or a body, to PATH_VALUES / BODIES).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from datetime import date
from typing import Any

import orjson
import pytest
from api_fixtures import ROLES as FIXTURE_ROLES
from api_fixtures import Api, event, induced_share_post, minimal_pack, open_api
from fastapi.routing import APIRoute

from clearcircle.policy.campaigns import parse_campaign
from clearcircle.policy.pack import builtin_pack_path
from clearcircle.policy.published import read_pack_files
from clearcircle.review.appeals import file_appeal
from clearcircle.review.queue import open_case

# Routes that are public by design (documentation, liveness) and so not in the table.
PUBLIC = {"/healthz", "/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"}
PUBLIC |= {"/console"}  # the moderator console, a mounted app: session login, own role table (test_console_pages)

ROLES = (*FIXTURE_ROLES, "compliance")  # compliance: merchant registry (S10) and campaigns (S12)
ALL = frozenset(ROLES)
STAFF = frozenset({"moderator", "admin"})
REGISTRY_READERS = frozenset({"moderator", "admin", "compliance"})
CAMPAIGN_WRITERS = frozenset({"admin", "compliance"})
COMPLIANCE = frozenset({"compliance"})

# (method, path) -> the roles admitted. Least privilege (clearcircle/api/auth.py): the integrator (the platform
# backend) sends events and reads decisions; moderators read accounts and the policy; admins also validate
# packs and verify the audit chain; compliance staff run the merchant registry and, with admins, campaigns, and read
# the policy, the signals and the decisions those touch.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/events"): frozenset({"integrator"}),
    ("POST", "/v1/events/batch"): frozenset({"integrator"}),
    ("GET", "/v1/decisions/{event_id:path}"): ALL,
    ("GET", "/v1/accounts/{account_id:path}"): STAFF,
    ("GET", "/v1/accounts/{account_id:path}/history"): STAFF,
    ("GET", "/v1/accounts/{account_id:path}/quotas"): REGISTRY_READERS,
    ("GET", "/v1/policy"): REGISTRY_READERS,
    ("POST", "/v1/policy/validate"): frozenset({"admin"}),
    ("POST", "/v1/policy/publish"): frozenset({"admin"}),
    ("GET", "/v1/audit/verify"): frozenset({"admin"}),
    ("GET", "/v1/signals"): ALL,
    ("POST", "/v1/merchants"): COMPLIANCE,
    ("GET", "/v1/merchants"): REGISTRY_READERS,
    ("GET", "/v1/merchants/{account_id:path}"): REGISTRY_READERS,
    ("POST", "/v1/merchants/{account_id:path}/verify"): COMPLIANCE,
    ("POST", "/v1/merchants/{account_id:path}/reject"): COMPLIANCE,
    ("POST", "/v1/merchants/{account_id:path}/revoke"): COMPLIANCE,
    ("POST", "/v1/campaigns"): CAMPAIGN_WRITERS,
    ("GET", "/v1/campaigns"): REGISTRY_READERS,
    ("GET", "/v1/campaigns/{name}"): REGISTRY_READERS,
    ("PUT", "/v1/campaigns/{name}"): CAMPAIGN_WRITERS,
    ("POST", "/v1/campaigns/{name}/end"): CAMPAIGN_WRITERS,
    # people in the loop (issue 6): moderators work the queue and decide appeals (admins read them); the
    # integrator files appeals for account owners; admins backtest; compliance reads transparency reports
    ("GET", "/v1/cases"): STAFF,
    ("GET", "/v1/cases/{case_id}"): STAFF,
    ("POST", "/v1/cases/{case_id}/claim"): frozenset({"moderator"}),
    ("POST", "/v1/cases/{case_id}/assign"): frozenset({"moderator"}),
    ("POST", "/v1/cases/{case_id}/decide"): frozenset({"moderator"}),
    ("POST", "/v1/appeals"): frozenset({"integrator"}),
    ("GET", "/v1/appeals"): frozenset({"integrator", "moderator", "admin"}),
    ("GET", "/v1/appeals/{appeal_id}"): frozenset({"integrator", "moderator", "admin"}),
    ("POST", "/v1/appeals/{appeal_id}/decide"): frozenset({"moderator"}),
    ("GET", "/v1/rules/stats"): REGISTRY_READERS,
    ("POST", "/v1/backtest"): frozenset({"admin"}),
    ("GET", "/v1/reports/transparency"): COMPLIANCE,
    ("GET", "/v1/reports/transparency.html"): COMPLIANCE,
}

SEED_EVENT = "seed-post-1"
SEED_ACCOUNT = "u-seed"
PATH_VALUES = {"event_id": SEED_EVENT, "account_id": SEED_ACCOUNT}
# Routes that change state get a record of their own, in the state the step starts from; asking again for the
# state a record is in answers 200 unchanged, so every admitted call below is a 200.
ROUTE_PATH_VALUES = {
    ("GET", "/v1/merchants/{account_id:path}"): {"account_id": "m-verify"},
    ("POST", "/v1/merchants/{account_id:path}/verify"): {"account_id": "m-verify"},
    ("POST", "/v1/merchants/{account_id:path}/reject"): {"account_id": "m-reject"},
    ("POST", "/v1/merchants/{account_id:path}/revoke"): {"account_id": "m-revoke"},
    ("GET", "/v1/campaigns/{name}"): {"name": "roles-change"},
    ("PUT", "/v1/campaigns/{name}"): {"name": "roles-change"},
    ("POST", "/v1/campaigns/{name}/end"): {"name": "roles-end"},
    # a case to claim and one to decide (a claim would hold the decision for its claimer); filled by the fixture
    ("POST", "/v1/cases/{case_id}/decide"): {},
}
ROUTE_PARAMS = {("GET", "/v1/reports/transparency"): {"month": "2026-03"},
                ("GET", "/v1/reports/transparency.html"): {"month": "2026-03"}}
CREDIT_CODE = "91110000600037341L"
LICENCE = "JY13101010000000"


def _campaign(name: str) -> dict[str, Any]:
    return {"name": name, "starts_at": "2031-03-01T00:00:00+08:00", "ends_at": "2031-04-01T00:00:00+08:00",
            "overrides": {"follow-burst": {"mode": "enforce"}}}


def _application(account: str) -> dict[str, Any]:
    return event("merchant_application", f"role-app-{account}", actor=account, company_name="某某食品有限公司",
                 credit_code=CREDIT_CODE, food_licence=LICENCE, categories=["food"])


def _body(method: str, path: str) -> Any:
    """A valid body for the route (fresh ids, so repeated calls are new events)."""
    if (method, path) == ("POST", "/v1/events"):
        return event("like", f"role-{uuid.uuid4().hex}")
    if (method, path) == ("POST", "/v1/events/batch"):
        return {"events": [event("like", f"role-{uuid.uuid4().hex}"), event("follow", f"role-{uuid.uuid4().hex}")]}
    if (method, path) == ("POST", "/v1/policy/publish"):  # the built-in pack: it stays the live pack after
        return {"files": read_pack_files(builtin_pack_path())}
    if (method, path) == ("POST", "/v1/policy/validate"):
        return {"files": minimal_pack()}
    if (method, path) == ("POST", "/v1/merchants"):
        return {"account": f"m-{uuid.uuid4().hex}", "company_name": "某某食品有限公司", "credit_code": CREDIT_CODE,
                "food_licence": LICENCE, "categories": ["food"]}
    if path.endswith("/verify"):
        return {"licence_expires": "2031-03-10"}
    if path.endswith(("/reject", "/revoke")):
        return {"reason": "role test"}
    if (method, path) == ("POST", "/v1/campaigns"):
        return _campaign(f"roles-{uuid.uuid4().hex[:12]}")
    if (method, path) == ("PUT", "/v1/campaigns/{name}"):
        return _campaign("roles-change")
    if path.endswith(("/claim", "/assign")):
        return {"moderator": "roles-mod"}
    if path.endswith("/decide"):
        return {"decision": "uphold", "reason": "role test"}
    if (method, path) == ("POST", "/v1/appeals"):
        return {"account": "u-seed-2", "event_id": "seed-post-2", "statement": "role test"}
    if (method, path) == ("POST", "/v1/backtest"):
        return {"files": minimal_pack()}
    return None


ROUTE_IDS = [f"{m} {p}" for m, p in ROUTE_ROLES]
ROUTE_ROLE_CASES = [pytest.param(m, p, role, id=f"{m} {p} as {role}") for (m, p) in ROUTE_ROLES for role in ROLES]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("roles")
    with open_api(f"sqlite:///{tmp / 'roles.db'}", tmp) as a:
        seeded = a.post_event(induced_share_post(SEED_EVENT, actor=SEED_ACCOUNT))
        assert seeded.status_code == 200, seeded.text
        a.keys["compliance"] = a.svc.store.create_key("compliance", "test-compliance")[1]
        for account in ("m-verify", "m-reject", "m-revoke"):
            assert a.post_event(_application(account)).status_code == 200
        a.svc.store.merchant_step("m-revoke", "verify", "seed", licence_expires=date(2031, 3, 10))
        for name in ("roles-change", "roles-end"):
            spec = parse_campaign(_campaign(name), a.svc.pack, a.svc.pipeline.registry)
            a.svc.store.campaign_save(spec.wire(), spec.starts_ms, spec.ends_ms, "seed")
        # issue 6: cases (one to claim, one to decide), an appeal to decide and an action to appeal
        PATH_VALUES["case_id"] = str(open_case(a.svc.store, SEED_ACCOUNT, SEED_EVENT, "rule", ["r"], 3))
        ROUTE_PATH_VALUES[("POST", "/v1/cases/{case_id}/decide")]["case_id"] = str(
            open_case(a.svc.store, SEED_ACCOUNT, SEED_EVENT, "rule", ["r"], 3))
        PATH_VALUES["appeal_id"] = str(file_appeal(a.svc.store, SEED_ACCOUNT, SEED_EVENT, "seed", "seed")[0].id)
        assert a.post_event(induced_share_post("seed-post-2", actor="u-seed-2")).status_code == 200
        yield a


def _call(api: Api, method: str, path: str, key: str | None) -> Any:
    headers = {} if key is None else {"X-API-Key": key}
    body = _body(method, path)
    values = {**PATH_VALUES, **ROUTE_PATH_VALUES.get((method, path), {})}
    return api.client.request(method, path.replace(":path}", "}").format(**values), headers=headers,
                              json=body if body is not None else None, params=ROUTE_PARAMS.get((method, path)))


def _app_routes(api: Api) -> set[tuple[str, str]]:
    found = set()
    for route in api.client.app.routes:
        path = getattr(route, "path", repr(route))
        if path in PUBLIC:
            continue
        for method in getattr(route, "methods", None) or {"(no method)"}:
            found.add((method, path))
    return found


def test_every_route_is_in_the_table(api):
    missing = _app_routes(api) - set(ROUTE_ROLES)
    assert not missing, f"add these routes to ROUTE_ROLES (and say which roles they admit): {sorted(missing)}"


def test_table_lists_no_route_the_app_does_not_have(api):
    stale = set(ROUTE_ROLES) - _app_routes(api)
    assert not stale, f"ROUTE_ROLES names routes the app does not have: {sorted(stale)}"


def test_declared_role_dependency_matches_table(api):
    """Each route's `require(...)` dependency declares exactly the table's roles (a second, static check)."""
    declared: dict[tuple[str, str], set[str]] = {}
    for route in api.client.app.routes:
        if not isinstance(route, APIRoute) or route.path in PUBLIC:
            continue
        roles = set()
        for dep in route.dependant.dependencies:
            roles |= set(getattr(dep.call, "allowed_roles", ()))
        for method in route.methods:
            declared[(method, route.path)] = roles
    assert declared == {k: set(v) for k, v in ROUTE_ROLES.items()}


def test_public_routes_need_no_key(api):
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(("method", "path", "role"), ROUTE_ROLE_CASES)
def test_role_is_admitted_exactly_when_listed(api, method, path, role):
    before = api.counts()
    response = _call(api, method, path, api.keys[role])
    if role in ROUTE_ROLES[(method, path)]:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code == 200, response.text  # the seeded values and bodies are valid
    else:
        assert response.status_code == 403, response.text
        assert role in response.json()["detail"]
        assert api.counts() == before, "a refused request stored something"


@pytest.mark.parametrize(("method", "path"), list(ROUTE_ROLES), ids=ROUTE_IDS)
def test_no_key_is_401(api, method, path):
    before = api.counts()
    response = _call(api, method, path, None)
    assert response.status_code == 401, response.text
    assert "WWW-Authenticate" in response.headers
    assert api.counts() == before


@pytest.mark.parametrize(("method", "path"), list(ROUTE_ROLES), ids=ROUTE_IDS)
@pytest.mark.parametrize("key", [
    pytest.param(lambda: f"cc_{secrets.token_hex(6)}_{secrets.token_urlsafe(24)}", id="well-formed"),
    pytest.param(lambda: "not-a-key", id="garbage"),
])
def test_unknown_key_is_401(api, method, path, key):
    before = api.counts()
    response = _call(api, method, path, key())
    assert response.status_code == 401, response.text
    assert "WWW-Authenticate" in response.headers
    assert api.counts() == before


@pytest.mark.parametrize(("method", "path"), list(ROUTE_ROLES), ids=ROUTE_IDS)
def test_revoked_key_is_401_immediately(api, method, path):
    role = sorted(ROUTE_ROLES[(method, path)])[0]
    key_info, key = api.svc.store.create_key(role, "to-revoke")
    assert _call(api, method, path, key).status_code == 200
    assert api.svc.store.revoke_key(key_info.id)
    before = api.counts()
    response = _call(api, method, path, key)
    assert response.status_code == 401, response.text
    assert api.counts() == before
    # the other keys of that role still work
    assert _call(api, method, path, api.keys[role]).status_code == 200


@pytest.mark.parametrize(("who", "status"), [(None, 401), ("unknown", 401), ("moderator", 403), ("integrator", 422)])
def test_an_invalid_single_event_is_refused_for_its_key_first(api, who, status):
    """Single events have their key checked with the group they are decided in (api/coalesce.py); one that
    never reaches a group (invalid) still has its key checked first: a refused caller learns nothing more."""
    key = {None: None, "unknown": f"cc_{secrets.token_hex(6)}_x"}.get(who, api.keys.get(who or ""))
    before = api.counts()
    response = api.client.post("/v1/events", content=b'{"id": "half-an-event", "type": "post_created"}',
                               headers={} if key is None else {"X-API-Key": key})
    assert response.status_code == status, response.text
    assert api.counts() == before


def test_single_events_waiting_together_have_their_keys_checked_together(db_url, tmp_path, monkeypatch):
    with open_api(db_url, tmp_path) as a:
        store, pipeline = a.svc.store, a.svc.pipeline
        revoked_info, revoked = store.create_key("integrator", "to-revoke")
        assert store.revoke_key(revoked_info.id)
        looked_up: list[set[str]] = []
        key_roles = store.key_roles
        monkeypatch.setattr(store, "key_roles", lambda keys: looked_up.append(set(keys)) or key_roles(keys))
        gate, submits = threading.Event(), []
        submit = pipeline.submit

        def slow_first(events):  # noqa: ANN001, ANN202
            submits.append([e.id for e in events])
            if len(submits) == 1:
                gate.wait(10)  # the others queue behind it, as under load
            return submit(events)

        monkeypatch.setattr(pipeline, "submit", slow_first)
        keys = [a.keys["integrator"], revoked, a.keys["moderator"], f"cc_{secrets.token_hex(6)}_x",
                a.keys["integrator"]]
        bodies = [orjson.dumps(event("post_created", f"grouped-{i}", actor=f"u-grp-{i}")) for i in range(5)]
        routes = a.client.app.state.event_routes

        async def main():  # noqa: ANN202
            first = asyncio.ensure_future(routes.answer("single", bodies[0], False, keys[0]))
            await asyncio.sleep(0.2)
            rest = [asyncio.ensure_future(routes.answer("single", b, False, k))
                    for b, k in zip(bodies[1:], keys[1:], strict=True)]
            await asyncio.sleep(0.2)
            gate.set()
            return await asyncio.gather(first, *rest)

        answers = asyncio.run(main())
        assert [status for status, _, _ in answers] == [200, 401, 403, 401, 200]
        assert "moderator" in orjson.loads(answers[2][1])["detail"]
        assert (b"www-authenticate", b"ApiKey") in answers[1][2]
        assert submits == [["grouped-0"], ["grouped-4"]]  # refused requests never reach the pipeline
        assert looked_up == [{keys[0]}, set(keys[1:])]  # one look-up for the four waiting together
        stored = [store.decision(f"grouped-{i}") is not None for i in range(5)]
        assert stored == [True, False, False, False, True]
