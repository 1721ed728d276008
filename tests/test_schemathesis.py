"""The app against its own OpenAPI schema (schemathesis, in process over ASGI): bad input never hurts.

For every operation, generated requests (valid and invalid per the schema) are sent with a key of a role
the route admits, and: no response is a 5xx; every refusal is a 4xx whose JSON body gives the reason; a
refused request stores nothing (the row count of every table is unchanged).

Cost: 10 examples an operation, ~60 s on SQLite (35 operations).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import sqlalchemy as sa
from api_fixtures import Api, event, induced_share_post, open_api
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings

EXAMPLES = 10


# The app is built at import: schemathesis parametrizes the test from the schema at collection time
# (schemathesis.pytest.from_fixture does not work with this pytest). The module fixture cleans it up.
_TMP = Path(tempfile.mkdtemp(prefix="cc-schemathesis-"))
_API_CM = open_api(f"sqlite:///{_TMP / 'cc.db'}", _TMP)
_API = _API_CM.__enter__()
schema = schemathesis.openapi.from_asgi("/openapi.json", _API.client.app)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    a = _API
    try:
        a.keys["compliance"] = a.svc.store.create_key("compliance", "test-compliance")[1]
        # something to find: a decision, an account with a measure, a merchant record
        assert a.post_event(induced_share_post("seed-1", actor="u-seed")).status_code == 200
        assert a.post_event(event("merchant_application", "seed-m", actor="m-seed")).status_code == 200
        yield a
    finally:
        _API_CM.__exit__(None, None, None)
        shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="module")
def roles(api: Api) -> dict[tuple[str, str], str]:
    """(METHOD, path as in the schema) -> a role the route admits (from its `require` dependency)."""
    out = {}
    for route in api.client.app.routes:
        if not isinstance(route, APIRoute):
            continue
        allowed = [getattr(d.call, "allowed_roles", None) for d in route.dependant.dependencies]
        admitted = sorted(next((a for a in allowed if a), ()))
        for method in route.methods:
            if admitted:
                out[(method, route.path_format)] = admitted[0]
    return out


_TABLES: list[str] = []


def row_counts(api: Api) -> tuple[int, ...]:
    """The row count of every table, in one query."""
    with api.svc.store.engine.connect() as conn:
        names = _TABLES or _TABLES.extend(sorted(sa.inspect(conn).get_table_names())) or _TABLES
        query = sa.select(*(sa.select(sa.func.count()).select_from(sa.table(n)).scalar_subquery() for n in names))
        return tuple(conn.execute(query).one())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_5xx_every_refusal_a_4xx_with_a_reason_and_nothing_stored(case, api, roles):
    role = roles.get((case.method.upper(), case.operation.path))
    headers = {"X-API-Key": api.keys[role]} if role else {}
    before = row_counts(api)
    response = case.call(headers=headers)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("detail"), str | list) and body["detail"], body
        assert row_counts(api) == before, f"a refused request stored something: {case.method} {case.formatted_path}"
