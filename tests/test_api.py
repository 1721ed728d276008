"""The HTTP API over both storage backends: events in, decisions out, refusals, idempotency, reads."""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from api_fixtures import (
    ROLES,
    VALID_BODIES,
    WIRE_TYPES,
    event,
    induced_share_post,
    later,
    minimal_pack,
    open_api,
)
from sqlalchemy import MetaData, select

from clearcircle.events.schemas import EVENT_TYPES, EventError, parse_event_json
from clearcircle.policy.decision import Decision
from clearcircle.policy.pack import builtin_pack_path

MiB = 1024 * 1024


@pytest.fixture
def api(db_url, tmp_path):
    """The app over a fresh database, once per backend."""
    with open_api(db_url, tmp_path) as a:
        yield a


@pytest.fixture
def sqlite_api(sqlite_url, tmp_path):
    """The app over SQLite only, for what does not depend on the storage backend (schema, pack validation)."""
    with open_api(sqlite_url, tmp_path) as a:
        yield a


def _decision(response: Any) -> Decision:
    """The response as a Decision (the wire model forbids extra keys), `duplicate` dropped."""
    assert response.status_code == 200, response.text
    data = dict(response.json())
    assert isinstance(data.pop("duplicate"), bool)
    return Decision.model_validate(data)


def _fields(response: Any) -> list[str]:
    body = response.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    return [e["field"] for e in body["errors"]]


# -- one valid event of each type ---------------------------------------------------------------------------


def test_every_wire_type_has_a_body_here():
    assert set(VALID_BODIES) == set(WIRE_TYPES) == set(EVENT_TYPES)
    assert len(WIRE_TYPES) == 14


def test_post_each_event_type_gives_a_decision(api, subtests):
    for n, type_ in enumerate(WIRE_TYPES, 1):
        with subtests.test(type=type_):
            ev = event(type_, f"ev-{type_}", actor=f"u-{type_}")
            audit_before = api.counts()["audit"]
            response = api.post_event(ev)
            decision = _decision(response)
            assert response.json()["duplicate"] is False
            assert decision.event_id == ev["id"]
            assert decision.pack_version == api.svc.pack.version
            expected_subject = ev["body"]["target"] if type_ == "moderator_action" else ev["actor"]
            assert decision.subject == expected_subject
            assert set(decision.rules).isdisjoint(decision.shadow_rules)
            # stored: it reads back the same; one event, one decision and at least one audit row more
            again = api.client.get(f"/v1/decisions/{ev['id']}", headers=api.h("integrator"))
            assert _decision(again) == decision
            counts = api.counts()
            assert counts["events"] == counts["decisions"] == n
            assert counts["audit"] > audit_before


def test_raw_identifiers_are_not_stored_or_returned(api):
    ev = event("account_registered", "reg-1", phone="+8613912345678", device_id="device-raw-77",
               payment_id="pay-raw-99", id_number="110101199003071234")
    response = api.post_event(ev)
    assert response.status_code == 200
    raws = ("13912345678", "device-raw-77", "pay-raw-99", "110101199003071234")
    assert not any(raw in response.text for raw in raws)
    meta = MetaData()
    meta.reflect(api.svc.store.engine)
    with api.svc.store.engine.connect() as conn:
        dump = "\n".join(str(row) for table in meta.sorted_tables for row in conn.execute(select(table)))
    assert "reg-1" in dump
    assert not any(raw in dump for raw in raws)


def test_id_of_128_chars_and_text_of_20000_chars_are_accepted(api):
    ev = event("post_created", "i" * 128, text="好" * 20_000)
    assert _decision(api.post_event(ev)).event_id == "i" * 128


def test_any_valid_id_reads_back(api, subtests):
    """Ids are opaque 1-128 char strings (EVENTS.md): every one posted must be readable by GET, percent-encoded."""
    for event_id in ("post 1", "post#1", "post?1", "50%", "帖子-1", "wx/post/1"):
        with subtests.test(id=event_id):
            posted = _decision(api.post_event(event("like", event_id, actor=event_id)))
            got = api.client.get(f"/v1/decisions/{quote(event_id, safe='')}", headers=api.h("integrator"))
            assert got.status_code == 200, got.text
            assert _decision(got) == posted
            account = api.client.get(f"/v1/accounts/{quote(event_id, safe='')}", headers=api.h("moderator"))
            assert account.status_code == 200, account.text
            assert account.json()["state"]["account_id"] == event_id


# -- refusals: 422 naming the field, nothing stored ----------------------------------------------------------


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return out


_DROP = object()


def _post() -> dict[str, Any]:  # a fresh id for each case, so one wrongly accepted case cannot mask another
    return event("post_created", f"bad-{uuid.uuid4().hex[:12]}")


BAD_EVENTS = [
    pytest.param(_with(_post(), "type", "post_deleted"), "type", id="unknown-type"),
    pytest.param(_with(_post(), "body.text", _DROP), "body.text", id="missing-body-text"),
    pytest.param(_with(event("friend_request_answered", "bad-answer"), "body.accepted", "yes"), "body.accepted",
                 id="accepted-as-string"),
    pytest.param(_with(event("message_push", "bad-push"), "body.audience", "1200"), "body.audience",
                 id="audience-as-string"),
    pytest.param(_with(_post(), "body.text", "x" * 20_001), "body.text", id="oversize-text"),
    pytest.param(_with(_post(), "occurred_at", "2026-03-02T09:14:05"), "occurred_at", id="naive-timestamp"),
    pytest.param(_with(_post(), "occurred_at", 1772414045), "occurred_at", id="timestamp-as-number"),
    pytest.param(_with(_post(), "id", "i" * 129), "id", id="id-129-chars"),
    pytest.param(_with(_post(), "body.colour", "red"), "body.colour", id="extra-body-field"),
    pytest.param(_with(_post(), "type", _DROP), "type", id="missing-type"),
]


def test_bad_event_is_422_naming_the_field_and_stores_nothing(api, subtests):
    for case in BAD_EVENTS:
        bad, field = case.values
        with subtests.test(case.id):
            before = api.counts()
            response = api.post_event(bad)
            assert response.status_code == 422, response.text
            assert field in _fields(response)
            assert api.counts() == before
            assert api.client.get(f"/v1/decisions/{bad.get('id')}", headers=api.h("integrator")).status_code == 404


@pytest.mark.parametrize(("raw", "fields"), [
    pytest.param(b'{"id": "x", "type": ', {"(body)", "(event)"}, id="invalid-json"),
    pytest.param(json.dumps([_post()]).encode(), {"(event)"}, id="array"),
    pytest.param(b'"post_created"', {"(event)"}, id="string"),
    pytest.param(b"", {"(body)", "(event)"}, id="empty"),
])
def test_non_object_body_is_422_and_stores_nothing(sqlite_api, raw, fields):
    before = sqlite_api.counts()
    response = sqlite_api.client.post("/v1/events", content=raw,
                                      headers={**sqlite_api.h("integrator"), "content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert set(_fields(response)) <= fields
    assert sqlite_api.counts() == before


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"id": "x", "type": ', id="invalid-json"),
    pytest.param(b"[1, 2]", id="array"),
    *[pytest.param(json.dumps(p.values[0]).encode(), id=p.id) for p in BAD_EVENTS],
])
def test_api_and_replay_refuse_with_the_same_field_paths(sqlite_api, raw):
    """app.py promises: the HTTP API and the CLI (`replay`, parse_event_json) refuse the same input with the
    same field paths. Either both accept the input or both refuse it naming the same fields."""
    try:
        parse_event_json(raw)
        cli_fields: list[str] = []
    except EventError as refused:
        cli_fields = [e["field"] for e in refused.errors]
    response = sqlite_api.client.post("/v1/events", content=raw,
                                      headers={**sqlite_api.h("integrator"), "content-type": "application/json"})
    assert response.status_code == (422 if cli_fields else 200), response.text
    api_fields = _fields(response) if response.status_code == 422 else []
    assert api_fields == cli_fields


# -- idempotency --------------------------------------------------------------------------------------------


def test_same_event_twice_is_one_event(api):
    ev = induced_share_post("dup-1")
    first = api.post_event(ev)
    state_after_first = api.account("u-1", at=later(minutes=1)).json()
    counts_after_first = api.counts()
    second = api.post_event(ev)
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    assert _decision(second) == _decision(first)
    assert api.account("u-1", at=later(minutes=1)).json() == state_after_first
    assert api.counts() == counts_after_first  # no event, decision, audit row, account or case added


def test_action_of_a_duplicate_is_applied_once(api):
    ev = induced_share_post("dup-2")
    first = _decision(api.post_event(ev))
    assert "induced-share-text" in first.rules
    assert [a.action for a in first.actions] == ["limit_reach"]
    for _ in range(2):
        assert api.post_event(ev).json()["duplicate"] is True
    history = api.client.get("/v1/accounts/u-1/history", headers=api.h("moderator")).json()
    changes = [c for c in history["changes"] if c.get("event_id") == "dup-2"]
    assert [c["action"] for c in changes] == ["limit_reach"]
    assert [d["event_id"] for d in history["decisions"]] == ["dup-2"]


def test_a_striking_moderator_action_sent_twice_gives_one_strike(api):
    ev = event("moderator_action", "mod-1", actor="mod-7", target="u-9", action="remove", reason="spam")
    first = api.post_event(ev)
    assert first.status_code == 200
    view = api.account("u-9", at=later(minutes=1)).json()["view"]
    assert view["strikes"] == 1
    assert api.post_event(ev).json()["duplicate"] is True
    assert api.account("u-9", at=later(minutes=1)).json()["view"]["strikes"] == 1


def test_same_id_with_other_content_gets_the_first_decision(api):
    first = _decision(api.post_event(induced_share_post("dup-3")))
    benign = event("post_created", "dup-3", text="今天天气不错")
    second = api.post_event(benign)
    assert second.json()["duplicate"] is True
    assert _decision(second) == first


def test_same_id_twice_in_one_batch(api):
    ev = induced_share_post("dup-4")
    response = api.post_batch([ev, ev])
    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    assert [d["duplicate"] for d in decisions] == [False, True]
    assert {k: v for k, v in decisions[0].items() if k != "duplicate"} == \
        {k: v for k, v in decisions[1].items() if k != "duplicate"}
    assert api.counts()["decisions"] == 1


# -- batches ------------------------------------------------------------------------------------------------


def test_batch_decides_in_order(api):
    events = [event("follow", "b-1", target="pa-1"), induced_share_post("b-2"), event("like", "b-3")]
    response = api.post_batch(events)
    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    assert [d["event_id"] for d in decisions] == ["b-1", "b-2", "b-3"]
    for d in decisions:
        d.pop("duplicate")
        Decision.model_validate(d)
    assert "induced-share-text" in decisions[1]["rules"]
    for ev in events:
        assert api.client.get(f"/v1/decisions/{ev['id']}", headers=api.h("integrator")).status_code == 200


def test_batch_with_one_invalid_event_is_refused_whole(api):
    bad = event("post_created", "bb-2")
    del bad["body"]["text"]
    before = api.counts()
    response = api.post_batch([event("like", "bb-1"), bad, event("like", "bb-3")])
    assert response.status_code == 422, response.text
    assert "events.1.body.text" in _fields(response)
    assert api.counts() == before
    for ev_id in ("bb-1", "bb-3"):
        assert api.client.get(f"/v1/decisions/{ev_id}", headers=api.h("integrator")).status_code == 404


@pytest.mark.parametrize("payload", [[], {"events": "nope"}, {"evts": []}, {"events": [[1]]}])
def test_batch_shape_is_checked(sqlite_api, payload):
    before = sqlite_api.counts()
    response = sqlite_api.client.post("/v1/events/batch", json=payload, headers=sqlite_api.h("integrator"))
    assert response.status_code == 422, response.text
    fields = _fields(response)
    assert any(f.startswith("events") for f in fields)
    # anything else named is a key the client sent that has no place in a batch
    assert all(f.startswith("events") or f in payload for f in fields)
    assert sqlite_api.counts() == before


def test_batch_over_max_batch_is_refused(db_url, tmp_path):
    with open_api(db_url, tmp_path, max_batch=5) as api:
        before = api.counts()
        response = api.post_batch([event("like") for _ in range(6)])
        assert response.status_code == 422, response.text
        assert "events" in _fields(response)
        assert api.counts() == before
        at_limit = api.post_batch([event("like") for _ in range(5)])
        assert at_limit.status_code == 200, at_limit.text
        assert len(at_limit.json()["decisions"]) == 5


def test_openapi_batch_limit_follows_max_batch(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path, max_batch=5) as api:
        schema = api.client.get("/openapi.json").json()
        body = schema["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["events"]["maxItems"] == 5


# -- reads --------------------------------------------------------------------------------------------------


def test_get_decision(api):
    posted = _decision(api.post_event(induced_share_post("d-1")))
    for role in ROLES:
        got = api.client.get("/v1/decisions/d-1", headers=api.h(role))
        assert _decision(got) == posted
        assert got.json()["duplicate"] is False
    missing = api.client.get("/v1/decisions/no-such-event", headers=api.h("integrator"))
    assert missing.status_code == 404


def test_account_unknown_is_404(api):
    assert api.account("nobody").status_code == 404


def test_account_view_is_computed_at_the_requested_time(api):
    decision = _decision(api.post_event(induced_share_post("acc-1", actor="u-5")))
    assert decision.verdict == "limit_reach"
    before = api.account("u-5", at=later(minutes=-1))
    just_after = api.account("u-5", at=later(minutes=1))
    eight_days = api.account("u-5", at=later(days=8))
    for r in (before, just_after, eight_days):
        assert r.status_code == 200, r.text
    assert before.json()["view"]["reach_limited"] is False
    assert just_after.json()["view"]["reach_limited"] is True
    assert eight_days.json()["view"]["reach_limited"] is False
    assert just_after.json()["view"]["at_ms"] == int(later(minutes=1).timestamp() * 1000)
    # the stored state is the same whatever the view time: expiry is computed, not polled
    assert just_after.json()["state"] == eight_days.json()["state"]
    assert just_after.json()["state"]["reach_limit"]["source"] == "acc-1"


def test_account_at_other_offset_is_the_same_instant(api):
    api.post_event(induced_share_post("acc-2", actor="u-6"))
    instant = later(days=7, minutes=-1)  # one minute before the 7-day limit ends
    local = api.account("u-6", at=instant).json()["view"]
    elsewhere = instant.astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert elsewhere.endswith("-05:00")
    other = api.client.get("/v1/accounts/u-6", params={"at": elsewhere}, headers=api.h("moderator")).json()["view"]
    assert local == other
    assert local["reach_limited"] is True


@pytest.mark.parametrize("at", ["2026-03-02T09:15:00", "yesterday"])
def test_account_at_without_offset_is_422(api, at):
    api.post_event(induced_share_post("acc-3", actor="u-7"))
    response = api.client.get("/v1/accounts/u-7", params={"at": at}, headers=api.h("moderator"))
    assert response.status_code == 422, response.text


def test_account_history_lists_decision_and_state_change(api):
    api.post_event(event("like", "h-0", actor="u-8", occurred_at=later(minutes=-5)))
    api.post_event(induced_share_post("h-1", actor="u-8"))
    response = api.client.get("/v1/accounts/u-8/history", headers=api.h("moderator"))
    assert response.status_code == 200
    history = response.json()
    assert history["account"] == "u-8"
    assert [d["event_id"] for d in history["decisions"]] == ["h-1", "h-0"]  # newest first
    assert history["decisions"][0]["verdict"] == "limit_reach"
    changes = [c for c in history["changes"] if c["kind"] == "state_change"]
    assert [(c["event_id"], c["action"], c["rule"]) for c in changes] == [("h-1", "limit_reach", "induced-share-text")]
    limited = api.client.get("/v1/accounts/u-8/history", params={"limit": 1}, headers=api.h("moderator")).json()
    assert [d["event_id"] for d in limited["decisions"]] == ["h-1"]


# -- policy -------------------------------------------------------------------------------------------------


def _builtin_rule_ids() -> set[str]:
    ids = set()
    for file in sorted((builtin_pack_path() / "rules").glob("*.yaml")):
        ids |= {r["id"] for r in yaml.safe_load(file.read_text(encoding="utf-8"))["rules"]}
    return ids


def test_policy_lists_the_builtin_rules(sqlite_api):
    response = sqlite_api.client.get("/v1/policy", headers=sqlite_api.h("moderator"))
    assert response.status_code == 200
    policy = response.json()
    assert policy["version"] == sqlite_api.svc.pack.version
    rules = policy["rules"]
    assert {r["id"] for r in rules} == _builtin_rule_ids()
    assert len(rules) == len(_builtin_rule_ids())
    for r in rules:
        assert re.fullmatch(r"S([1-9]|1[0-6])", r["norm"]["spec"]), r
        assert r["norm"]["citation"]
        assert r["mode"] in ("enforce", "shadow")
        assert r["file"].startswith("rules/") and r["line"] >= 1


def _validate(api, files: dict[str, str]) -> Any:
    return api.client.post("/v1/policy/validate", json={"files": files}, headers=api.h("admin"))


def test_validate_a_minimal_valid_pack(sqlite_api):
    response = _validate(sqlite_api, minimal_pack())
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["valid"] is True
    assert result["problems"] == []
    assert result["rules"] == 1
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", result["version"])
    assert result["version"] != sqlite_api.svc.pack.version
    # the version is a content hash: same files, same version; one changed byte, another
    same = _validate(sqlite_api, minimal_pack()).json()
    assert same["version"] == result["version"]
    files = minimal_pack()
    files["pack.yaml"] = "name: mini2\n"
    other = _validate(sqlite_api, files).json()
    assert other["valid"] is True and other["version"] != result["version"]


def test_validate_reports_misspelled_signal_with_file_line_rule_and_hint(sqlite_api):
    rule_file = minimal_pack()["rules/r.yaml"].replace("text.categories", "text.categoriez")
    response = _validate(sqlite_api, minimal_pack(rule_file))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["valid"] is False
    rule_line = rule_file.splitlines().index("  - id: r1") + 1
    [problem] = result["problems"]
    assert problem["file"] == "rules/r.yaml"
    assert problem["line"] == rule_line
    assert problem["rule"] == "r1"
    assert "text.categoriez" in problem["message"]
    assert "did you mean" in problem["message"] and "text.categories" in problem["message"]


@pytest.mark.parametrize("name", ["../escape-{u}.yaml", "rules/../../escape-{u}.yaml", "/tmp/escape-{u}.yaml",
                                  "rules/../pack.yaml", "rules/x.py"])
def test_validate_refuses_bad_file_names(sqlite_api, name):
    name = name.format(u=uuid.uuid4().hex)
    files = {**minimal_pack(), name: "rules: []\n"}
    response = _validate(sqlite_api, files)
    assert response.status_code == 422, response.text
    assert not (Path(tempfile.gettempdir()) / Path(name).name).exists()


# -- audit, schema, limits ----------------------------------------------------------------------------------


def test_audit_verifies_after_events(api):
    api.post_batch([induced_share_post("a-1"), event("like", "a-2"),
                    event("moderator_action", "a-3", actor="mod-1", target="u-2", action="remove", reason="spam")])
    response = api.client.get("/v1/audit/verify", headers=api.h("admin"))
    assert response.status_code == 200
    result = response.json()
    assert result == {"ok": True, "rows": api.counts()["audit"], "findings": []}
    assert result["rows"] >= 3 + 3  # three keys created, three decisions, plus state changes


def _walk(node: Any, found: set[str], refs: set[str]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("const"), str):
            found.add(node["const"])
        found.update(v for v in node.get("enum", []) if isinstance(v, str))
        if isinstance(node.get("$ref"), str):
            refs.add(node["$ref"])
        for v in node.values():
            _walk(v, found, refs)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found, refs)


def test_openapi_documents_every_event_type(sqlite_api):
    response = sqlite_api.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    values: set[str] = set()
    refs: set[str] = set()
    _walk(schema, values, refs)
    assert set(WIRE_TYPES) <= values
    for path in ("/v1/events", "/v1/events/batch"):
        body = schema["paths"][path]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"]
    components = schema["components"]["schemas"]
    unresolved = {r for r in refs if not r.startswith("#/components/schemas/") or r.split("/")[-1] not in components}
    assert not unresolved


def _big_post() -> dict[str, Any]:
    """A valid post over 16 MiB: five images of 3.5 MiB (the event model allows nine of 4 MiB)."""
    return event("post_created", "big-1", images=[{"data_base64": "QUJD" * (7 * MiB // 8)}] * 5)


BODY_ROUTES = {  # path -> (role, an otherwise valid body over 16 MiB)
    "/v1/events": ("integrator", _big_post),
    "/v1/events/batch": ("integrator", lambda: {"events": [_big_post()]}),
    # nine notes files of 2,000,000 chars each (the most PackFiles allows a file); the loader does not read them
    "/v1/policy/validate": ("admin", lambda: {"files": {**minimal_pack(),
                                                        **{f"notes/pad{i}.txt": "x" * 2_000_000 for i in range(9)}}}),
}


@pytest.mark.parametrize("path", list(BODY_ROUTES))
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_request_body_over_16_mib_is_413(sqlite_api, path, chunked):
    role, make_body = BODY_ROUTES[path]
    raw = json.dumps(make_body()).encode()
    assert len(raw) > 16 * MiB

    def pieces():
        for i in range(0, len(raw), MiB):
            yield raw[i:i + MiB]

    before = sqlite_api.counts()
    response = sqlite_api.client.post(path, content=pieces() if chunked else raw,
                                      headers={**sqlite_api.h(role), "content-type": "application/json"})
    assert response.status_code == 413, response.text[:300]
    assert sqlite_api.counts() == before
