"""Every API route admits exactly the roles in ROUTE_ROLES; no key, an unknown key or a revoked key is 401.

A new route fails `test_every_route_is_in_the_table` until it is added to ROUTE_ROLES (and, if it takes
path parameters or a body, to PATH_VALUES / BODIES).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from api_fixtures import ROLES, Api, event, induced_share_post, minimal_pack, open_api
from fastapi.routing import APIRoute

# Routes that are public by design (documentation, liveness) and so not in the table.
PUBLIC = {"/healthz", "/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"}

ALL = frozenset(ROLES)
STAFF = frozenset({"moderator", "admin"})

# (method, path) -> the roles admitted. Least privilege (clearcircle/api/auth.py): the integrator (the platform
# backend) sends events and reads decisions; moderators read accounts and the policy; admins also validate
# packs and verify the audit chain.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/events"): frozenset({"integrator"}),
    ("POST", "/v1/events/batch"): frozenset({"integrator"}),
    ("GET", "/v1/decisions/{event_id:path}"): ALL,
    ("GET", "/v1/accounts/{account_id:path}"): STAFF,
    ("GET", "/v1/accounts/{account_id:path}/history"): STAFF,
    ("GET", "/v1/policy"): STAFF,
    ("POST", "/v1/policy/validate"): frozenset({"admin"}),
    ("GET", "/v1/audit/verify"): frozenset({"admin"}),
    ("GET", "/v1/signals"): ALL,
}

SEED_EVENT = "seed-post-1"
SEED_ACCOUNT = "u-seed"
PATH_VALUES = {"event_id": SEED_EVENT, "account_id": SEED_ACCOUNT}


def _body(method: str, path: str) -> Any:
    """A valid body for the route (fresh ids, so repeated calls are new events)."""
    if (method, path) == ("POST", "/v1/events"):
        return event("like", f"role-{uuid.uuid4().hex}")
    if (method, path) == ("POST", "/v1/events/batch"):
        return {"events": [event("like", f"role-{uuid.uuid4().hex}"), event("follow", f"role-{uuid.uuid4().hex}")]}
    if (method, path) == ("POST", "/v1/policy/validate"):
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
        yield a


def _call(api: Api, method: str, path: str, key: str | None) -> Any:
    headers = {} if key is None else {"X-API-Key": key}
    body = _body(method, path)
    return api.client.request(method, path.replace(":path}", "}").format(**PATH_VALUES), headers=headers,
                              json=body if body is not None else None)


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
