"""The wire contract (clearcircle.events.schemas): every event type parses, every refusal names its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clearcircle.events import EVENT_TYPES, Event, EventError, parse_event, parse_event_json
from clearcircle.events.schemas import EVENT_CLASSES, MAX_SHORT, MAX_TEXT

AT = "2026-03-02T09:14:05+08:00"

VALID_BODIES: dict[str, dict[str, Any]] = {
    "account_registered": {"account_type": "personal", "device_id": "dev-1", "phone": "+86 138-0013-8000",
                           "payment_id": "pay-9", "id_number": "11010119900307663X", "display_name": "小王"},
    "post_created": {"surface": "moments", "text": "转发到朋友圈集满30个赞送面膜",
                     "links": [{"url": "https://example.com/a", "landing_text": "landing"}],
                     "images": [{"data_base64": "aGVsbG8="}]},
    "share": {"item": "post-1", "destination": "moments", "item_owner": "u-2"},
    "like": {"item": "post-1"},
    "friend_request": {"target": "u-2", "message": "hi"},
    "friend_request_answered": {"target": "u-2", "accepted": True},
    "follow": {"target": "pa-1"},
    "unfollow": {"target": "pa-1"},
    "referral": {"referee": "u-3", "reward": 12.5, "fee_paid": 399},
    "message_push": {"audience": 1000},
    "report": {"target": "u-2", "reason": "mlm", "item": "post-1", "note": "downline recruiting"},
    "buyer_complaint": {"seller": "u-2", "reason": "counterfeit", "order_ref": "o-1", "amount": 88.8},
    "merchant_application": {"company_name": "某某食品有限公司", "credit_code": "91350100M000100Y43",
                             "food_licence": "JY13501000000000", "categories": ["food", "farm_produce"]},
    "moderator_action": {"target": "u-2", "action": "restrict", "reason": "spam", "duration_days": 7,
                         "label": "marketing", "feature": "share"},
}
# the smallest valid body of each type (only required fields)
MINIMAL_BODIES: dict[str, dict[str, Any]] = {
    "account_registered": {"account_type": "service"},
    "post_created": {"surface": "comment", "text": ""},
    "share": {"item": "https://example.com/x", "destination": "chat"},
    "like": {"item": "post-1"},
    "friend_request": {"target": "u-2"},
    "friend_request_answered": {"target": "u-2", "accepted": False},
    "follow": {"target": "pa-1"},
    "unfollow": {"target": "pa-1"},
    "referral": {"referee": "u-3"},
    "message_push": {"audience": 0},
    "report": {"target": "u-2", "reason": "other"},
    "buyer_complaint": {"seller": "u-2", "reason": "not_delivered"},
    "merchant_application": {"company_name": "c", "credit_code": "x", "categories": []},
    "moderator_action": {"target": "u-2", "action": "lift", "reason": "appeal granted"},
}


def envelope(type_: str = "like", body: Any = None, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "e-1", "type": type_, "occurred_at": AT, "actor": "u-1",
                            "body": VALID_BODIES[type_] if body is None else body}
    data.update(overrides)
    return data


def refused(data: Any) -> list[dict[str, str]]:
    with pytest.raises(EventError) as info:
        parse_event(data)
    errors = info.value.errors
    assert errors, "an EventError must list at least one problem"
    for e in errors:
        assert set(e) >= {"field", "message", "type"}
    return errors


def fields(errors: list[dict[str, str]]) -> list[str]:
    return [e["field"] for e in errors]


# -- every type parses -----------------------------------------------------------------------------------

def test_the_fourteen_types_are_all_covered():
    assert len(EVENT_TYPES) == 14
    assert set(VALID_BODIES) == set(EVENT_TYPES) == set(MINIMAL_BODIES)


@pytest.mark.parametrize("type_", sorted(VALID_BODIES))
def test_each_type_parses_from_a_full_body(type_):
    event = parse_event(envelope(type_))
    assert isinstance(event, Event)
    assert isinstance(event, EVENT_CLASSES[type_])
    assert event.type == type_
    assert event.id == "e-1" and event.actor == "u-1"
    assert event.schema_version == 1
    dumped = event.body.model_dump(mode="json")
    for key, value in VALID_BODIES[type_].items():
        assert dumped[key] == value, key
    # the wire form parses back to the same event
    assert parse_event(event.wire()) == event
    assert parse_event_json(orjson.dumps(envelope(type_))) == event


@pytest.mark.parametrize("type_", sorted(MINIMAL_BODIES))
def test_each_type_parses_from_its_required_fields_only(type_):
    event = parse_event(envelope(type_, MINIMAL_BODIES[type_]))
    assert event.type == type_
    dumped = event.body.model_dump()
    optional = set(dumped) - set(MINIMAL_BODIES[type_])
    for key in optional:
        assert dumped[key] in (None, []), f"optional {key} should default to empty"


@pytest.mark.parametrize("type_", sorted(MINIMAL_BODIES))
def test_each_required_body_field_is_named_when_missing(type_):
    for key in MINIMAL_BODIES[type_]:
        body = {k: v for k, v in MINIMAL_BODIES[type_].items() if k != key}
        assert f"body.{key}" in fields(refused(envelope(type_, body)))


# -- refusals name the dotted field ----------------------------------------------------------------------

def test_unknown_type_is_named_type():
    errors = refused(envelope("like", type="post_deleted"))
    assert fields(errors) == ["type"]
    assert "unknown event type" in errors[0]["message"]


def test_missing_type_is_named_type():
    data = envelope("like")
    del data["type"]
    assert fields(refused(data)) == ["type"]


@pytest.mark.parametrize("missing", ["id", "occurred_at", "actor", "body"])
def test_missing_envelope_field_is_named(missing):
    data = envelope("post_created")
    del data[missing]
    errors = refused(data)
    assert fields(errors) == [missing]
    assert errors[0]["type"] == "missing"


def test_missing_body_field_is_named_with_dotted_path():
    errors = refused(envelope("post_created", {"surface": "moments"}))
    assert fields(errors) == ["body.text"]


def test_nested_body_field_path_includes_list_index():
    body = {"surface": "article", "text": "x", "links": [{"url": "https://a"}, {"landing_text": "no url"}]}
    assert fields(refused(envelope("post_created", body))) == ["body.links.1.url"]


@pytest.mark.parametrize(
    ("type_", "body", "field"),
    [
        ("message_push", {"audience": "many"}, "body.audience"),
        ("friend_request_answered", {"target": "u-2", "accepted": "maybe"}, "body.accepted"),
        ("post_created", {"surface": "moments", "text": 42}, "body.text"),
        ("merchant_application", {"company_name": "c", "credit_code": "x", "categories": "food"}, "body.categories"),
        ("like", ["post-1"], "body"),
    ],
)
def test_wrong_type_is_named(type_, body, field):
    assert field in fields(refused(envelope(type_, body)))


def test_wrong_envelope_type_is_named():
    assert fields(refused(envelope("like", actor=17))) == ["actor"]
    assert fields(refused(envelope("like", occurred_at=[2026]))) == ["occurred_at"]


@pytest.mark.parametrize(
    ("type_", "body", "field"),
    [
        ("message_push", {"audience": -1}, "body.audience"),
        ("message_push", {"audience": 2_000_000_001}, "body.audience"),
        ("referral", {"referee": "u-3", "reward": -5}, "body.reward"),
        ("referral", {"referee": "u-3", "fee_paid": float("inf")}, "body.fee_paid"),
        ("referral", {"referee": "u-3", "reward": float("nan")}, "body.reward"),
        ("buyer_complaint", {"seller": "s", "reason": "other", "amount": float("-inf")}, "body.amount"),
        ("message_push", {"audience": 10**30}, "body.audience"),
        ("buyer_complaint", {"seller": "s", "reason": "counterfeit", "amount": -0.01}, "body.amount"),
        ("moderator_action", {"target": "u", "action": "ban", "reason": "r", "duration_days": 0},
         "body.duration_days"),
        ("share", {"item": "p", "destination": "timeline"}, "body.destination"),
        ("report", {"target": "u", "reason": "because"}, "body.reason"),
        ("moderator_action", {"target": "u", "action": "delete_account", "reason": "r"}, "body.action"),
    ],
)
def test_value_out_of_range_is_named(type_, body, field):
    assert fields(refused(envelope(type_, body))) == [field]


def test_oversize_text_is_named():
    ok = parse_event(envelope("post_created", {"surface": "moments", "text": "字" * MAX_TEXT}))
    assert len(ok.body.text) == MAX_TEXT
    errors = refused(envelope("post_created", {"surface": "moments", "text": "字" * (MAX_TEXT + 1)}))
    assert fields(errors) == ["body.text"]
    assert errors[0]["type"] == "string_too_long"
    assert fields(refused(envelope("friend_request", {"target": "u", "message": "m" * (MAX_SHORT + 1)}))) == [
        "body.message"]


def test_oversize_and_empty_ids_are_named():
    assert fields(refused(envelope("like", id="x" * 129))) == ["id"]
    assert fields(refused(envelope("like", id=""))) == ["id"]
    assert fields(refused(envelope("like", actor="a" * 129))) == ["actor"]
    assert parse_event(envelope("like", id="x" * 128)).id == "x" * 128


@pytest.mark.parametrize("stamp", ["2026-03-02T09:14:05", "2026-03-02 09:14:05"])
def test_naive_timestamp_is_refused(stamp):
    errors = refused(envelope("like", occurred_at=stamp))
    assert fields(errors) == ["occurred_at"]
    assert errors[0]["type"] == "timezone_aware"


def test_unparseable_timestamp_is_named():
    assert fields(refused(envelope("like", occurred_at="yesterday"))) == ["occurred_at"]


def test_extra_envelope_field_is_named():
    errors = refused(envelope("like", priority="high"))
    assert fields(errors) == ["priority"]
    assert errors[0]["type"] == "extra_forbidden"


def test_extra_body_field_is_named():
    errors = refused(envelope("like", {"item": "p", "weight": 3}))
    assert fields(errors) == ["body.weight"]
    assert errors[0]["type"] == "extra_forbidden"


def test_several_problems_are_all_listed():
    errors = refused(envelope("referral", {"reward": -1}, actor=""))
    assert set(fields(errors)) == {"actor", "body.referee", "body.reward"}
    text = str(EventError(errors))
    for f in ("actor", "body.referee", "body.reward"):
        assert f in text


@pytest.mark.parametrize("data", [None, [], "event", 3, 2.5, True, [envelope("like")]])
def test_non_object_is_refused_whole(data):
    assert fields(refused(data)) == ["(event)"]


@pytest.mark.parametrize("raw", [b'{"id": "e-1", ', b"", b"\xff\xfe", "{'id': 1}", b"[1, 2]", b"null"])
def test_invalid_json_text_is_an_event_error(raw):
    with pytest.raises(EventError) as info:
        parse_event_json(raw)
    assert [e["field"] for e in info.value.errors] == ["(event)"]


def test_event_error_is_a_value_error():
    assert issubclass(EventError, ValueError)


# -- timestamps are normalised to UTC --------------------------------------------------------------------

@pytest.mark.parametrize(
    "stamp",
    ["2026-03-02T09:14:05+08:00", "2026-03-02T01:14:05Z", "2026-03-01T20:14:05-05:00", "2026-03-02T06:44:05+05:30"],
)
def test_occurred_at_is_normalised_to_utc(stamp):
    event = parse_event(envelope("like", occurred_at=stamp))
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at == datetime(2026, 3, 2, 1, 14, 5, tzinfo=UTC)
    assert event.wire()["occurred_at"] in ("2026-03-02T01:14:05Z", "2026-03-02T01:14:05+00:00")


def test_same_instant_in_different_zones_gives_equal_events():
    a = parse_event(envelope("like", occurred_at="2026-03-02T09:14:05.250+08:00"))
    b = parse_event(envelope("like", occurred_at="2026-03-02T01:14:05.250Z"))
    assert a == b
    assert a.occurred_at.microsecond == 250_000


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_timestamp_at_the_edge_of_the_calendar_is_refused_not_crashed(stamp):
    # valid RFC 3339, but the instant is outside what datetime can hold in UTC: must be an EventError
    # naming occurred_at, never an OverflowError escaping to the caller (an HTTP 500)
    assert fields(refused(envelope("like", occurred_at=stamp))) == ["occurred_at"]


def test_timestamp_outside_the_storable_range_is_refused():
    assert fields(refused(envelope("like", occurred_at="1969-12-31T23:59:59Z"))) == ["occurred_at"]
    assert parse_event(envelope("like", occurred_at="1970-01-01T08:00:00+08:00")).occurred_at == datetime(
        1970, 1, 1, tzinfo=UTC)


# -- property: parse_event only ever raises EventError ---------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
BODY_KEYS = sorted({k for cls in EVENT_CLASSES.values() for k in cls.model_fields["body"].annotation.model_fields}
                   | {"url", "landing_text", "data_base64"})
OFFSETS = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
TIMESTAMPS = st.builds(
    lambda d, off: d.replace(tzinfo=timezone(off)).isoformat(),
    st.datetimes(),
    OFFSETS.map(lambda td: timedelta(minutes=int(td.total_seconds() // 60))),
)
FIELD_VALUES = JSON_VALUES | st.sampled_from(
    ["moments", "personal", "ban", "lift", "counterfeit", "food", "", "x" * 129, -1, 0, 1e10, True])


@st.composite
def fuzzed_bodies(draw: st.DrawFn, type_: str) -> Any:
    base = dict(draw(st.sampled_from([VALID_BODIES[type_], MINIMAL_BODIES[type_]])))
    for key in draw(st.lists(st.sampled_from(BODY_KEYS), max_size=4)):
        if draw(st.booleans()):
            base[key] = draw(FIELD_VALUES | st.lists(st.dictionaries(st.sampled_from(BODY_KEYS), FIELD_VALUES,
                                                                      max_size=3), max_size=2))
        else:
            base.pop(key, None)
    return base


@st.composite
def fuzzed_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    type_ = draw(st.sampled_from(EVENT_TYPES))
    data = envelope(type_, draw(fuzzed_bodies(type_) | JSON_VALUES))
    data["occurred_at"] = draw(st.just(AT) | TIMESTAMPS | JSON_VALUES)
    for key in draw(st.lists(st.sampled_from(["id", "type", "occurred_at", "actor", "body", "extra"]), max_size=2)):
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(JSON_VALUES | st.sampled_from(EVENT_TYPES))
    return data


def _json_text(value: Any) -> str:
    """JSON text of the value (the stdlib writes big integers and NaN, which orjson refuses)."""
    return json.dumps(value, ensure_ascii=False)


def _parse_or_event_error(data: Any) -> None:
    try:
        event = parse_event(data)
    except EventError as exc:
        assert exc.errors
        for e in exc.errors:
            assert isinstance(e["field"], str) and e["field"]
            assert isinstance(e["message"], str)
        return
    # anything accepted is a real event with a UTC time that survives its own wire form
    assert isinstance(event, Event)
    assert event.type in EVENT_TYPES
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert parse_event(event.wire()) == event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES | st.dictionaries(st.sampled_from(["id", "type", "occurred_at", "actor", "body"]) | st.text(
    max_size=8), JSON_VALUES, max_size=6))
def test_arbitrary_json_like_values_raise_only_event_error(data):
    _parse_or_event_error(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | st.text(max_size=200) | JSON_VALUES.map(_json_text)
       | fuzzed_envelopes().map(_json_text))
@example(_json_text(envelope("like", occurred_at="9999-12-31T23:59:59-00:01")))
def test_arbitrary_json_text_raises_only_event_error(raw):
    try:
        event = parse_event_json(raw)
    except EventError as exc:
        assert exc.errors and all(e["field"] for e in exc.errors)
        return
    assert parse_event_json(orjson.dumps(event.wire())) == event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzzed_envelopes())
@example(envelope("like", occurred_at="0001-01-01T00:00:00+00:01"))
def test_valid_envelopes_with_fuzzed_bodies_raise_only_event_error(data):
    _parse_or_event_error(data)
