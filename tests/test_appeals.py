"""Appeals and reversals (S15): an overturn restores the account exactly as it would have been without the
overturned action (enforcement property, and end to end on SQLite and PostgreSQL), audited in the chain."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import orjson
import pytest
from api_fixtures import open_api
from hypothesis import given, settings
from hypothesis import strategies as st
from review_fixtures import INDUCED_SHARE, T0, decide, ev, mod, open_svc, registered, rows

from clearcircle.enforcement import enforce as enforcement
from clearcircle.enforcement.actions import Request
from clearcircle.enforcement.enforce import ENFORCEMENT_FIELDS, enforce, reverse
from clearcircle.enforcement.state import DAY_MS, AccountState
from clearcircle.policy.pack import builtin_pack_path, load_pack
from clearcircle.review import appeals
from clearcircle.review.errors import Conflict, NotFound, ReviewError

SETTINGS = load_pack(builtin_pack_path()).settings  # its ladder: 3 strikes restrict, 5 suspend, 8 ban
BASE_MS = 1_770_000_000_000


# --- the property, on enforcement alone -------------------------------------------------------------------------

request = st.builds(
    lambda action, offset, days, strike, key: (action, offset, days, strike, key),
    st.sampled_from(["label", "limit_reach", "restrict", "suspend", "ban", "lift", "remove", "review"]),
    st.integers(min_value=0, max_value=40 * DAY_MS),
    st.sampled_from([None, 1.0, 7.0, 30.0]),
    st.booleans(),
    st.sampled_from(["a", "b"]),
)
events = st.lists(st.lists(request, min_size=1, max_size=3), min_size=1, max_size=14)


def _requests(i: int, reqs: list[tuple]) -> list[Request]:
    out = []
    for j, (action, offset, days, strike, key) in enumerate(reqs):
        out.append(Request(action=action, account="acc", rule=f"r{j}-{action}", source=f"e{i}",
                           at_ms=BASE_MS + offset, days=days, feature=f"f{key}", label=f"l{key}", strike=strike,
                           strike_days=90))
    return out


def _play(groups: list[list[tuple]], skip: int | None = None) -> AccountState:
    state = AccountState(account_id="acc")
    for i, reqs in enumerate(groups):
        if i != skip:
            enforce(_requests(i, reqs), lambda _a: state, SETTINGS)
    return state


def _fields(state: AccountState) -> dict:
    return state.model_dump(include=set(ENFORCEMENT_FIELDS))


@settings(max_examples=150, deadline=None)
@given(events, st.data())
def test_reversal_equals_never_having_acted(groups, data):
    k = data.draw(st.integers(min_value=0, max_value=len(groups) - 1))
    overturned = _play(groups)
    changes = reverse(overturned, f"e{k}", "appeal:1", SETTINGS)
    without = _play(groups, skip=k)
    assert overturned.model_dump() == without.model_dump()  # measures, strikes, case marks, the ledger itself
    assert all(c.action == "reverse" and c.detail["exact"] for c in changes)


@settings(max_examples=60, deadline=None)
@given(events, st.data())
def test_reversal_is_exact_after_the_ledger_folds(groups, data):
    k = data.draw(st.integers(min_value=0, max_value=len(groups) - 1))
    with mock.patch.object(enforcement, "LEDGER_MAX", 4):
        overturned = _play(groups)
        assert len(overturned.ledger) <= 4 + 2
        kept = {e.source for e in overturned.ledger}
        changes = reverse(overturned, f"e{k}", "appeal:1", SETTINGS)
        without = _play(groups, skip=k)
    if f"e{k}" in kept:
        assert _fields(overturned) == _fields(without)
        assert all(c.detail["exact"] for c in changes)
    else:  # folded away: the fallback only drops what the event itself still holds
        assert all(not c.detail["exact"] for c in changes)


def test_state_written_before_the_ledger_falls_back_to_removing_by_source():
    state = AccountState(account_id="old")
    from clearcircle.enforcement.actions import apply

    apply(state, Request("ban", "old", "moderator", "m-1", BASE_MS, strike=True))
    apply(state, Request("label", "old", "r", "p-1", BASE_MS, label="spam"))
    changes = reverse(state, "m-1", "appeal:9", SETTINGS)
    assert state.ban is None and state.strikes == [] and "spam" in state.labels
    assert changes[0].detail == {"event_id": "m-1", "changed": ["ban", "strike:moderator"], "exact": False}


# --- end to end: the pipeline, the store, the audit chain --------------------------------------------------------

def _history(target: str, with_ban: bool) -> list:
    """Measures, strikes and a ladder step: restrict + suspend + ban give 3 strikes (ladder: restrict)."""
    events = [
        registered(target, T0 - timedelta(days=100)),
        ev("post_created", target, T0, id_="post-1", surface="moments", text=INDUCED_SHARE),
        mod("label", target, T0 + timedelta(hours=1), id_="m-label", label="spam", duration_days=30),
        mod("restrict", target, T0 + timedelta(hours=2), id_="m-restrict", feature="share", duration_days=10),
        mod("suspend", target, T0 + timedelta(hours=3), id_="m-suspend", duration_days=1),
    ]
    if with_ban:
        events.append(mod("ban", target, T0 + timedelta(hours=4), id_="m-ban"))
    events.append(mod("limit_reach", target, T0 + timedelta(hours=5), id_="m-limit", duration_days=3))
    return events


def test_overturned_ban_leaves_the_state_it_would_have_had(db_url, tmp_path, make_db_url):
    with_ban = open_svc(db_url, tmp_path)
    without = open_svc(make_db_url(), tmp_path)
    try:
        decide(with_ban, *_history("shop", True))
        decide(without, *_history("shop", False))
        before = with_ban.store.account_state("shop")
        assert before.ban is not None and before.view(T0.timestamp() * 1000 + 5 * 3_600_000).banned
        ladder = before.restrictions.get("post_moments")
        assert ladder is not None and ladder.rule == "strike-ladder-3"  # the ban's strike was the third
        appeal, created = appeals.file_appeal(with_ban.store, "shop", "m-ban", "我没有违规", "integrator")
        assert created and appeal.status == "open"
        decided, changed = appeals.decide_appeal(with_ban, appeal.id, "overturn", "mistaken identity", "mod-2")
        assert changed and decided.status == "overturned"
        after = with_ban.store.account_state("shop")
        expected = without.store.account_state("shop")
        assert after.model_dump() == expected.model_dump()
        assert after.ban is None and "post_moments" not in after.restrictions
        assert len(after.strikes) == 2
        changed_names = decided.changes[0]["detail"]["changed"]
        assert {"ban", "restriction:post_moments", "strike:moderator"} <= set(changed_names)
        # both steps and the reversal are in the hash chain, and the chain holds
        kinds = [r[0] for r in rows(with_ban, "select kind from audit where subject = 'shop' order by seq")]
        assert kinds[-3:] == ["appeal_filed", "state_change", "appeal_decided"]
        entry = orjson.loads(rows(with_ban, "select payload from audit where kind = 'state_change' "
                                            "order by seq desc")[0][0])
        assert entry["event_id"] == f"appeal:{appeal.id}" and entry["action"] == "reverse"
        checked, findings = with_ban.store.verify_audit()
        assert checked > 0 and findings == []
        # the rule behind the action is labelled overturned (its precision counts it)
        labels = rows(with_ban, "select kind, name, outcome from case_labels where appeal_id = :a", a=appeal.id)
        assert [tuple(r) for r in labels] == [("rule", "moderator", "overturned")]
    finally:
        with_ban.close()
        without.close()


def test_overturn_restores_reach_and_clears_labels_and_later_events_see_it(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        d = decide(svc, ev("post_created", "writer", T0, id_="p-share", surface="moments", text=INDUCED_SHARE),
                   mod("label", "writer", T0 + timedelta(minutes=5), id_="m-lab", label="marketing",
                       duration_days=30))
        assert d[0]["verdict"] == "limit_reach"
        at = int((T0 + timedelta(hours=1)).timestamp() * 1000)
        assert svc.store.account_state("writer").view(at).reach_limited
        a1, _ = appeals.file_appeal(svc.store, "writer", "p-share", "这是家人聚会的照片", "integrator")
        a2, _ = appeals.file_appeal(svc.store, "writer", "m-lab", "不是广告", "integrator")
        appeals.decide_appeal(svc, a1.id, "overturn", "family photo", "mod-2")
        appeals.decide_appeal(svc, a2.id, "overturn", "not marketing", "mod-2")
        view = svc.store.account_state("writer").view(at)
        assert not view.reach_limited and view.labels == [] and view.strikes == 0
        # the working set of the pipeline saw the reversal: a later event is decided on the restored state
        later = decide(svc, ev("post_created", "writer", T0 + timedelta(hours=2), surface="moments",
                               text="周末和朋友去爬山"))[0]
        assert later["verdict"] == "allow"
        assert svc.store.account_state("writer").view(at).reach_limited is False
    finally:
        svc.close()


def test_appeal_rules(db_url, tmp_path):
    svc = open_svc(db_url, tmp_path)
    try:
        decide(svc, mod("ban", "x", T0, id_="m-x"), ev("like", "x", T0, id_="like-1", item="p"))
        with pytest.raises(NotFound):
            appeals.file_appeal(svc.store, "x", "like-1", "?", "integrator")  # it did nothing to x
        with pytest.raises(NotFound):
            appeals.file_appeal(svc.store, "someone-else", "m-x", "?", "integrator")
        with pytest.raises(ReviewError):
            appeals.file_appeal(svc.store, "x", "m-x", "  ", "integrator")
        first, created = appeals.file_appeal(svc.store, "x", "m-x", "please", "integrator")
        again, created_again = appeals.file_appeal(svc.store, "x", "m-x", "please", "integrator")
        assert created and not created_again and again.id == first.id
        with pytest.raises(ReviewError):
            appeals.decide_appeal(svc, first.id, "maybe", "r", "mod")
        upheld, changed = appeals.decide_appeal(svc, first.id, "uphold", "fraud confirmed", "mod")
        assert changed and upheld.status == "upheld" and upheld.changes == []
        assert svc.store.account_state("x").ban is not None  # upholding changes nothing
        assert appeals.decide_appeal(svc, first.id, "uphold", "again", "mod")[1] is False
        with pytest.raises(Conflict):
            appeals.decide_appeal(svc, first.id, "overturn", "changed my mind", "mod")
        with pytest.raises(Conflict):
            appeals.file_appeal(svc.store, "x", "m-x", "once more", "integrator")
        with pytest.raises(NotFound):
            appeals.decide_appeal(svc, 9999, "uphold", "r", "mod")
        assert [a.id for a in appeals.list_appeals(svc.store, status=None, account="x")] == [first.id]
        assert appeals.list_appeals(svc.store) == []
    finally:
        svc.close()


def test_appeal_over_http(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path) as api:
        ban = {"id": "http-ban", "type": "moderator_action", "occurred_at": T0.isoformat(), "actor": "mod-1",
               "body": {"target": "owner", "action": "ban", "reason": "spam"}}
        assert api.post_event(ban).status_code == 200
        body = {"account": "owner", "event_id": "http-ban", "statement": "我的账号被误封"}
        filed = api.client.post("/v1/appeals", json=body, headers=api.h("integrator"))
        assert filed.status_code == 200 and filed.json()["created"] is True, filed.text
        appeal_id = filed.json()["appeal"]["id"]
        assert filed.json()["appeal"]["filed_by"] == "key:test-integrator"
        assert api.client.post("/v1/appeals", json=body, headers=api.h("moderator")).status_code == 403
        missing = api.client.post("/v1/appeals", json={**body, "event_id": "nope"}, headers=api.h("integrator"))
        assert missing.status_code == 404
        bad = api.client.post(f"/v1/appeals/{appeal_id}/decide", json={"decision": "overturn", "reason": ""},
                              headers=api.h("moderator"))
        assert bad.status_code == 422
        done = api.client.post(f"/v1/appeals/{appeal_id}/decide", json={"decision": "overturn", "reason": "error"},
                               headers=api.h("moderator"))
        assert done.status_code == 200 and done.json()["appeal"]["status"] == "overturned", done.text
        account = api.account("owner").json()
        assert account["view"]["banned"] is False and account["view"]["strikes"] == 0
        conflict = api.client.post(f"/v1/appeals/{appeal_id}/decide", json={"decision": "uphold", "reason": "x"},
                                   headers=api.h("moderator"))
        assert conflict.status_code == 409
        assert api.client.get("/v1/appeals/424242", headers=api.h("moderator")).status_code == 404
        listed = api.client.get("/v1/appeals", params={"status": "all"}, headers=api.h("moderator"))
        assert [a["id"] for a in listed.json()["appeals"]] == [appeal_id]
        assert api.client.get("/v1/appeals", params={"status": "bogus"},
                              headers=api.h("moderator")).status_code == 422


def test_appeal_commands(sqlite_url, tmp_path):
    from typer.testing import CliRunner

    from clearcircle.cli.main import app

    svc = open_svc(sqlite_url, tmp_path)
    try:
        decide(svc, mod("suspend", "cli-owner", T0, id_="cli-suspend", duration_days=30))
    finally:
        svc.close()
    runner = CliRunner()
    db = ["--db", sqlite_url]
    filed = runner.invoke(app, ["appeals", "file", "cli-owner", "cli-suspend", "--statement", "误判", *db])
    assert filed.exit_code == 0 and "appeal 1" in filed.output, filed.output
    assert runner.invoke(app, ["appeals", "file", "cli-owner", "nope", "--statement", "x", *db]).exit_code == 1
    listed = runner.invoke(app, ["appeals", "list", "--json", *db])
    assert listed.exit_code == 0 and '"cli-suspend"' in listed.output
    assert runner.invoke(app, ["appeals", "list", "--status", "bogus", *db]).exit_code == 2
    done = runner.invoke(app, ["appeals", "decide", "1", "overturn", "--reason", "wrong account", *db])
    assert done.exit_code == 0 and "overturned" in done.output, done.output
    assert runner.invoke(app, ["appeals", "decide", "1", "uphold", "--reason", "x", *db]).exit_code == 1
    svc = open_svc(sqlite_url, tmp_path)
    try:
        assert svc.store.account_state("cli-owner").suspension is None
    finally:
        svc.close()


def test_a_batch_findings_label_can_be_appealed(db_url, tmp_path):
    """Steps that are not events (a detector run labelling accounts) are appealed by their source id."""
    from clearcircle.store.unit import dumps

    svc = open_svc(db_url, tmp_path)
    try:
        decide(svc, registered("farm", T0 - timedelta(days=30)))
        request = Request(action="label", account="farm", rule="detector-lockstep-follow", source="finding-7",
                          at_ms=int(T0.timestamp() * 1000), days=30, label="bought_followers")
        with svc.pipeline.staff_unit() as uow:  # as clearcircle.store.findings applies a finding
            for change in enforce([request], uow.touch, svc.pack.settings):
                uow.add_audit(request.at_ms, "state_change", change.account,
                              dumps({"event_id": "finding-7", **change.model_dump(mode="json")}))
        assert "bought_followers" in svc.store.account_state("farm").labels
        appeal, _ = appeals.file_appeal(svc.store, "farm", "finding-7", "真实粉丝", "integrator")
        decided, _ = appeals.decide_appeal(svc, appeal.id, "overturn", "organic growth", "mod-1")
        assert svc.store.account_state("farm").labels == {}
        assert decided.changes[0]["detail"]["changed"] == ["label:bought_followers"]
        labels = rows(svc, "select name, outcome from case_labels where appeal_id = :a", a=appeal.id)
        assert [tuple(r) for r in labels] == [("detector-lockstep-follow", "overturned")]
    finally:
        svc.close()
