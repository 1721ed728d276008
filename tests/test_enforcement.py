"""Enforcement: the action registry on account state (unit), and the same through the pipeline (end to end)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clearcircle.config import Settings
from clearcircle.enforcement.actions import ACTIONS, DEFAULT_DAYS, Request, apply
from clearcircle.enforcement.state import DAY_MS, AccountState
from clearcircle.events import parse_event
from clearcircle.policy.decision import Decision
from clearcircle.service import Service, open_service

T0 = 1_772_400_000_000  # 2026-03-01T21:20:00Z, in ms
HOUR_MS = 3_600_000


def req(action: str, at_ms: int = T0, source: str = "e-1", **kw: Any) -> Request:
    return Request(action=action, account="u1", rule=kw.pop("rule", "rule-x"), source=source, at_ms=at_ms, **kw)


def fresh() -> AccountState:
    return AccountState(account_id="u1")


def kinds(changes: list) -> list[str]:
    return [c.action for c in changes]


# -- each action changes state as documented -------------------------------------------------------------

def test_registry_holds_exactly_the_documented_actions():
    assert set(ACTIONS) == {"label", "limit_reach", "restrict", "suspend", "ban", "lift", "remove", "review"}
    with pytest.raises(ValueError, match="unknown action"):
        apply(fresh(), req("delete_account"))


def test_label_named_and_permanent_by_default():
    s = fresh()
    changes = apply(s, req("label", label="marketing"))
    assert kinds(changes) == ["label"]
    assert changes[0].detail == {"label": "marketing", "until_ms": None}
    assert s.view(T0).labels == ["marketing"]
    assert s.view(T0 + 3650 * DAY_MS).labels == ["marketing"]
    assert s.view(T0 - 1).labels == []
    # without a label name the rule id names it; with days it expires
    apply(s, req("label", at_ms=T0, source="e-2", days=2))
    assert s.view(T0 + DAY_MS).labels == ["marketing", "rule-x"]
    assert s.view(T0 + 2 * DAY_MS).labels == ["marketing"]


def test_limit_reach_defaults_to_seven_days():
    s = fresh()
    changes = apply(s, req("limit_reach"))
    end = T0 + int(DEFAULT_DAYS["limit_reach"] * DAY_MS)
    assert kinds(changes) == ["limit_reach"] and changes[0].detail["until_ms"] == end
    assert s.view(T0).reach_limited and s.view(end - 1).reach_limited
    assert not s.view(end).reach_limited
    assert not s.view(T0 - 1).reach_limited
    assert s.view(T0).strikes == 0, "no strike unless asked"


def test_restrict_a_feature_for_its_days():
    s = fresh()
    changes = apply(s, req("restrict", feature="share_to_moments", days=3))
    end = T0 + 3 * DAY_MS
    assert kinds(changes) == ["restrict"]
    assert changes[0].detail == {"feature": "share_to_moments", "until_ms": end}
    assert s.view(T0).restrictions == {"share_to_moments": end}
    assert s.view(end - 1).restrictions == {"share_to_moments": end}
    assert s.view(end).restrictions == {}


def test_restrict_without_feature_restricts_posting():
    s = fresh()
    apply(s, req("restrict"))
    assert s.view(T0).restrictions == {"post": T0 + int(DEFAULT_DAYS["restrict"] * DAY_MS)}


def test_restrictions_of_different_features_are_independent():
    s = fresh()
    apply(s, req("restrict", feature="share", days=1))
    apply(s, req("restrict", source="e-2", feature="follow", days=5))
    assert set(s.view(T0).restrictions) == {"share", "follow"}
    assert set(s.view(T0 + 2 * DAY_MS).restrictions) == {"follow"}


def test_suspend_for_its_days():
    s = fresh()
    changes = apply(s, req("suspend", days=30))
    end = T0 + 30 * DAY_MS
    assert kinds(changes) == ["suspend"]
    v = s.view(T0 + 29 * DAY_MS)
    assert v.suspended and v.suspended_until_ms == end
    assert not s.view(end).suspended and s.view(end).suspended_until_ms is None


def test_ban_is_permanent():
    s = fresh()
    assert kinds(apply(s, req("ban"))) == ["ban"]
    assert s.view(T0).banned and s.view(T0 + 100 * 365 * DAY_MS).banned
    assert not s.view(T0 - 1).banned


def test_remove_only_strikes():
    s = fresh()
    assert apply(s, req("remove")) == []
    assert s.model_dump() == fresh().model_dump()
    changes = apply(s, req("remove", source="e-2", strike=True, strike_days=30))
    assert kinds(changes) == ["strike"]
    assert changes[0].detail == {"expires_ms": T0 + 30 * DAY_MS}
    v = s.view(T0)
    assert v.strikes == 1 and not (v.banned or v.suspended or v.reach_limited or v.restrictions or v.labels)


def test_review_opens_a_case_without_touching_measures():
    s = fresh()
    changes = apply(s, req("review"))
    assert kinds(changes) == ["case_opened"]
    v = s.view(T0)
    assert not (v.banned or v.suspended or v.reach_limited or v.restrictions or v.labels) and v.strikes == 0


def test_strike_is_added_alongside_the_measure():
    s = fresh()
    changes = apply(s, req("limit_reach", strike=True))
    assert kinds(changes) == ["limit_reach", "strike"]
    assert s.view(T0).strikes == 1


def test_lift_ends_every_active_measure_but_keeps_strikes():
    s = fresh()
    apply(s, req("label", source="a", label="spam"))
    apply(s, req("limit_reach", source="b"))
    apply(s, req("restrict", source="c", feature="share", days=30))
    apply(s, req("suspend", source="d", days=30, strike=True))
    apply(s, req("ban", source="e"))
    lift_at = T0 + DAY_MS
    changes = apply(s, req("lift", at_ms=lift_at, source="m", rule="moderator"))
    assert kinds(changes) == ["lift"]
    assert sorted(changes[0].detail["lifted"]) == sorted(
        ["ban", "suspension", "reach_limit", "restriction:share", "label:spam"])
    after = s.view(lift_at)
    assert not (after.banned or after.suspended or after.reach_limited or after.restrictions or after.labels)
    assert after.strikes == 1
    before = s.view(lift_at - 1)
    assert before.banned and before.suspended and before.reach_limited and before.restrictions and before.labels
    # nothing left to lift
    assert apply(s, req("lift", at_ms=lift_at + 1, source="m2")) == []


def test_lift_does_not_touch_a_measure_that_already_ended():
    s = fresh()
    apply(s, req("suspend", days=1))
    assert apply(s, req("lift", at_ms=T0 + 2 * DAY_MS, source="m")) == []
    assert s.suspension is not None and s.suspension.until_ms == T0 + DAY_MS


# -- idempotence -------------------------------------------------------------------------------------------

def _prepared(action: str) -> AccountState:
    s = fresh()
    if action == "lift":
        apply(s, req("suspend", at_ms=T0 - DAY_MS, source="before", days=30))
    return s


@pytest.mark.parametrize("action", ["label", "limit_reach", "restrict", "suspend", "ban", "lift", "remove", "review"])
def test_applying_the_same_request_twice_changes_nothing_the_second_time(action):
    s = _prepared(action)
    request = req(action, days=5 if action not in ("ban", "lift", "remove", "review") else None, strike=True)
    first = apply(s, request)
    assert first, "the first application changes something"
    snapshot = s.model_dump()
    assert apply(s, request) == []
    assert s.model_dump() == snapshot


# -- computed expiry: longer extends, shorter does not -----------------------------------------------------

def test_expiry_is_computed_by_the_view_without_any_job():
    s = fresh()
    apply(s, req("restrict", feature="share", days=7))
    apply(s, req("limit_reach", source="e-2", days=2))
    end = T0 + 7 * DAY_MS
    assert s.view(end - 1).restrictions == {"share": end}
    assert s.view(end).restrictions == {}
    assert s.view(end + 1000 * DAY_MS).restrictions == {}
    # the stored state still holds the (ended) measure: nothing was purged, only the view changed
    assert s.restrictions["share"].until_ms == end


@pytest.mark.parametrize("action", ["restrict", "suspend", "limit_reach", "label"])
def test_a_longer_request_extends(action):
    s = fresh()
    apply(s, req(action, days=3, feature="share", label="x"))
    changes = apply(s, req(action, at_ms=T0 + DAY_MS, source="e-2", days=7, feature="share", label="x"))
    assert kinds(changes) == [action]
    new_end = T0 + 8 * DAY_MS
    assert changes[0].detail["until_ms"] == new_end
    assert _active(s, action, T0 + 5 * DAY_MS)
    assert not _active(s, action, new_end)
    # it is one continuous measure: still active from its first start
    assert _active(s, action, T0)


@pytest.mark.parametrize("action", ["restrict", "suspend", "limit_reach", "label"])
def test_a_shorter_request_does_not_shorten(action):
    s = fresh()
    apply(s, req(action, days=10, feature="share", label="x"))
    snapshot = s.model_dump()
    assert apply(s, req(action, at_ms=T0 + DAY_MS, source="e-2", days=1, feature="share", label="x")) == []
    assert s.model_dump() == snapshot
    assert _active(s, action, T0 + 9 * DAY_MS)


@pytest.mark.parametrize("action", ["restrict", "suspend", "limit_reach", "label"])
def test_a_late_arriving_earlier_request_does_not_shorten(action):
    # events carry their own time and may arrive out of order: a request stamped before the current measure
    # started, ending before it ends, must not replace it ("a measure only ever extends")
    s = fresh()
    apply(s, req(action, at_ms=T0 + 10 * DAY_MS, source="later", days=7, feature="share", label="x"))
    apply(s, req(action, at_ms=T0 + 5 * DAY_MS, source="earlier", days=7, feature="share", label="x"))
    assert _active(s, action, T0 + 15 * DAY_MS), "the later measure (days 10-17) was cut short"


def test_a_late_arriving_ban_does_not_undo_a_later_lift():
    # ban on day 10, lifted on day 20; a ban stamped day 5 arrives afterwards: the lift (the latest word) stands
    s = fresh()
    apply(s, req("ban", at_ms=T0 + 10 * DAY_MS, source="ban-new"))
    apply(s, req("lift", at_ms=T0 + 20 * DAY_MS, source="lift", rule="moderator"))
    apply(s, req("ban", at_ms=T0 + 5 * DAY_MS, source="ban-old"))
    assert not s.view(T0 + 30 * DAY_MS).banned, "a stale ban re-banned the account permanently"


def test_a_permanent_measure_is_not_replaced_by_a_timed_one():
    s = fresh()
    apply(s, req("label", label="x"))  # permanent
    assert apply(s, req("label", at_ms=T0 + DAY_MS, source="e-2", label="x", days=3)) == []
    assert s.view(T0 + 1000 * DAY_MS).labels == ["x"]


def test_a_measure_after_an_expired_one_starts_anew():
    s = fresh()
    apply(s, req("suspend", days=1))
    later = T0 + 10 * DAY_MS
    changes = apply(s, req("suspend", at_ms=later, source="e-2", days=1))
    assert kinds(changes) == ["suspend"]
    assert s.view(later).suspended and not s.view(T0 + 5 * DAY_MS).suspended


def _active(s: AccountState, action: str, at: int) -> bool:
    v = s.view(at)
    return {"restrict": "share" in v.restrictions, "suspend": v.suspended, "limit_reach": v.reach_limited,
            "label": "x" in v.labels}[action]


# -- strikes ----------------------------------------------------------------------------------------------

def test_strikes_decay():
    s = fresh()
    apply(s, req("remove", strike=True, strike_days=90))
    apply(s, req("remove", at_ms=T0 + 10 * DAY_MS, source="e-2", strike=True, strike_days=90))
    assert s.view(T0).strikes == 1
    assert s.view(T0 + 10 * DAY_MS).strikes == 2
    assert s.view(T0 + 90 * DAY_MS - 1).strikes == 2
    assert s.view(T0 + 90 * DAY_MS).strikes == 1
    assert s.view(T0 + 100 * DAY_MS).strikes == 0


def test_strike_is_keyed_by_source_and_rule():
    s = fresh()
    assert kinds(apply(s, req("remove", strike=True))) == ["strike"]
    assert apply(s, req("remove", strike=True)) == []
    assert kinds(apply(s, req("remove", strike=True, rule="other-rule"))) == ["strike"]
    assert kinds(apply(s, req("remove", strike=True, source="e-2"))) == ["strike"]
    assert s.view(T0).strikes == 3


def test_a_banned_account_gets_no_more_strikes():
    s = fresh()
    apply(s, req("ban"))
    assert apply(s, req("remove", at_ms=T0 + 1, source="e-2", strike=True)) == []
    assert s.view(T0 + 1).strikes == 0


# -- end to end through the pipeline ---------------------------------------------------------------------

COUNTERFEIT = "高仿名牌包包，原单品质，微信下单包邮"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def ev(event_id: str, type_: str, actor: str, body: dict[str, Any], at: datetime) -> Any:
    return parse_event({"id": event_id, "type": type_, "occurred_at": at.isoformat(), "actor": actor, "body": body})


def post(event_id: str, actor: str, at: datetime, text: str = COUNTERFEIT) -> Any:
    return ev(event_id, "post_created", actor, {"surface": "moments", "text": text}, at)


def mod(event_id: str, target: str, action: str, at: datetime, **body: Any) -> Any:
    return ev(event_id, "moderator_action", "moderator-1",
              {"target": target, "action": action, "reason": "test", **body}, at)


@pytest.fixture
def svc(db_url: str, tmp_path: Path):
    service: Service = open_service(Settings(db_url=db_url, key_file=tmp_path / "hash.key"))
    try:
        yield service
    finally:
        service.close()


def one(service: Service, event: Any) -> dict:
    (outcome,) = service.pipeline.submit([event])
    Decision.model_validate(outcome.decision)
    return outcome.decision


def state_changes(service: Service, event_id: str | None = None) -> list[str]:
    import json

    with service.store.engine.connect() as conn:
        rows = conn.execute(sa.text("select payload from audit where kind = 'state_change' order by seq")).all()
    return [r[0] for r in rows if event_id is None or json.loads(r[0])["event_id"] == event_id]


def test_counterfeit_post_is_removed_with_a_strike(svc):
    d = one(svc, post("p-1", "seller", START))
    assert d["verdict"] == "remove"
    assert "counterfeit-sale-text" in d["rules"]
    assert [(a["action"], a["account"]) for a in d["actions"]] == [("strike", "seller")]
    assert svc.store.account_state("seller").view(ms(START)).strikes == 1
    clean = one(svc, post("p-2", "other", START, text="今天天气很好，去公园散步了"))
    assert clean["verdict"] == "allow" and clean["actions"] == []


def test_strike_ladder_escalates_with_repeated_violations(svc):
    ladder = {3: ("restrict", 7), 5: ("suspend", 7), 8: ("ban", None)}  # pack.yaml strikes.ladder
    for n in range(1, 9):
        at = START + timedelta(days=n)
        d = one(svc, post(f"p-{n}", "seller", at))
        view = svc.store.account_state("seller").view(ms(at))
        assert "counterfeit-sale-text" in d["rules"]
        assert view.strikes == n
        step = max((k for k in ladder if k <= n), default=None)
        if step is None:
            assert d["verdict"] == "remove"
            assert not view.restrictions and not view.suspended
            continue
        action, days = ladder[step]
        assert d["verdict"] == action, f"post {n}: the ladder's {action} raises the verdict"
        fired = [a for a in d["actions"] if a["rule"] == f"strike-ladder-{step}"]
        assert [a["action"] for a in fired] == [action], d["actions"]
        if n == 3:
            assert view.restrictions == {"post_moments": ms(at) + days * DAY_MS}
            assert not view.suspended and not view.banned
        if n == 5:
            assert view.suspended and view.suspended_until_ms == ms(at) + days * DAY_MS
            assert not view.banned
        if n == 8:
            assert view.banned
    assert svc.store.account_state("seller").view(ms(START + timedelta(days=3650))).banned


def test_decayed_strikes_never_reach_the_ladder(svc):
    for n in range(4):
        at = START + timedelta(days=91 * n)
        d = one(svc, post(f"p-{n}", "seller", at))
        assert d["verdict"] == "remove", f"post {n}: earlier strikes decayed after 90 days"
        assert svc.store.account_state("seller").view(ms(at)).strikes == 1
        assert not any(a["rule"].startswith("strike-ladder") for a in d["actions"])


def test_moderator_restriction_expires_without_a_job(svc):
    d = one(svc, mod("m-1", "u1", "restrict", START, duration_days=3, feature="share"))
    assert d["verdict"] == "restrict" and d["subject"] == "u1"
    end = ms(START + timedelta(days=3))
    state = svc.store.account_state("u1")
    assert state.view(end - 1).restrictions == {"share": end}
    assert state.view(end).restrictions == {}
    share = {"item": "post-9", "destination": "group"}
    during = one(svc, ev("s-1", "share", "u1", share, START + timedelta(days=1)))
    assert "restricted-feature-use" in during["rules"] and during["verdict"] == "remove"
    after = one(svc, ev("s-2", "share", "u1", share, START + timedelta(days=3)))
    assert "restricted-feature-use" not in after["rules"]


def test_moderator_ban_then_lift(svc):
    assert one(svc, mod("m-ban", "u1", "ban", START))["verdict"] == "ban"
    assert svc.store.account_state("u1").view(ms(START) + 1).banned
    acting = one(svc, post("p-1", "u1", START + timedelta(hours=1), text="hello"))
    assert "banned-account-activity" in acting["rules"]
    lift_at = START + timedelta(days=2)
    lift = one(svc, mod("m-lift", "u1", "lift", lift_at))
    assert lift["verdict"] == "allow"
    assert [a["action"] for a in lift["actions"]] == ["lift"]
    state = svc.store.account_state("u1")
    assert not state.view(ms(lift_at)).banned
    assert not state.view(ms(lift_at + timedelta(days=30))).banned
    assert state.view(ms(lift_at) - 1).banned, "the history before the lift is kept"
    after = one(svc, post("p-2", "u1", lift_at + timedelta(hours=1), text="hello"))
    assert "banned-account-activity" not in after["rules"]


def test_moderator_action_replayed_is_not_applied_twice(svc):
    ban = mod("m-1", "u1", "ban", START)
    first = svc.pipeline.submit([ban])[0]
    assert not first.duplicate
    changes = state_changes(svc)
    assert changes
    assert one(svc, mod("m-2", "u1", "lift", START + timedelta(days=1)))["verdict"] == "allow"
    replay = svc.pipeline.submit([ban])[0]
    assert replay.duplicate
    assert replay.decision == first.decision
    assert len(state_changes(svc, "m-1")) == len(changes)
    assert not svc.store.account_state("u1").view(ms(START + timedelta(days=2))).banned, "the replay re-banned"


@pytest.mark.parametrize("same_batch", [True, False], ids=["same-batch", "separate-batches"])
def test_same_event_id_twice_yields_one_set_of_actions(svc, same_batch):
    event = post("p-1", "seller", START)
    if same_batch:
        outcomes = svc.pipeline.submit([event, event])
    else:
        outcomes = svc.pipeline.submit([event]) + svc.pipeline.submit([event])
    assert [o.duplicate for o in outcomes] == [False, True]
    assert outcomes[0].decision == outcomes[1].decision
    assert len(state_changes(svc, "p-1")) == len(outcomes[0].decision["actions"]) == 1
    assert svc.store.account_state("seller").view(ms(START)).strikes == 1
    assert svc.store.counts()["decisions"] == 1 and svc.store.counts()["events"] == 1


def test_same_id_with_a_different_body_keeps_the_first_decision(svc):
    first = one(svc, post("p-1", "seller", START))
    again = svc.pipeline.submit([post("p-1", "seller", START, text="完全不同的内容")])[0]
    assert again.duplicate and again.decision == first
    assert len(state_changes(svc, "p-1")) == 1


def test_late_arriving_moderator_restriction_does_not_cut_a_later_one_short(svc):
    # day 10: restrict sharing for 7 days (to day 17); then an older action (day 5, 7 days) arrives late
    one(svc, mod("m-new", "u1", "restrict", START + timedelta(days=10), duration_days=7, feature="share"))
    one(svc, mod("m-old", "u1", "restrict", START + timedelta(days=5), duration_days=7, feature="share"))
    state = svc.store.account_state("u1")
    assert "share" in state.view(ms(START + timedelta(days=15))).restrictions, "the day-10 restriction was lost"
