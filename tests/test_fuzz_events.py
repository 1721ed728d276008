"""Property tests of event parsing (events/schemas.py): any input is an Event or an EventError, nothing else.

Raw bytes, any Unicode (lone surrogates, NUL), deep JSON, huge strings, wrong types, valid events with one
field replaced by junk: `parse_event_json`, `parse_batch_json` and `parse_event` never raise anything but
the documented EventError, and every error names a field.
"""

from __future__ import annotations

import copy
import json

import orjson
from api_fixtures import VALID_BODIES, event
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clearcircle.events.schemas import Event, EventError, parse_batch_json, parse_event, parse_event_json

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None, exclude_categories=()),
                   max_size=200)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63), st.floats(), ANY_TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(ANY_TEXT, inner, max_size=4)), max_leaves=20)


def expect_event_or_error(parse, raw) -> None:  # noqa: ANN001
    try:
        assert isinstance(parse(raw), Event | list)
    except EventError as exc:
        assert exc.errors and all(e["field"] and e["message"] for e in exc.errors), exc.errors


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@FUZZ
@given(st.one_of(st.binary(max_size=500), ANY_TEXT))
@example(b"\x00")
@example(b"\xff\xfe")
@example("\ud800")
@example('{"id": "\ud800"}')
@example(deep(100_000))
@example('{"events": ' + deep(50_000) + "}")
def test_any_bytes_or_text(raw):
    expect_event_or_error(parse_event_json, raw)
    expect_event_or_error(lambda r: parse_batch_json(r, 10), raw)


def _paths(value, path=()):  # noqa: ANN001, ANN202
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))


@FUZZ
@given(st.sampled_from(sorted(VALID_BODIES)), st.data(), JSON)
def test_valid_event_with_one_field_replaced_by_junk(kind, data, junk):
    ev = event(kind)
    path = data.draw(st.sampled_from(list(_paths(ev))[1:]))
    target = ev
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = junk
    expect_event_or_error(parse_event, copy.deepcopy(ev))
    raw = json.dumps(ev, ensure_ascii=False).encode("utf-8", "surrogatepass")
    expect_event_or_error(parse_event_json, raw)
    expect_event_or_error(lambda r: parse_batch_json(r, 10), b'{"events": [' + raw + b"]}")


@FUZZ
@given(JSON)
@example({"id": "x", "type": "like", "actor": "a", "occurred_at": "2026-03-02T09:14:05+08:00",
          "body": {"item": "x" * 5_000_000}})
@example({"id": "x\x00", "type": "like", "actor": "a", "occurred_at": "2026-03-02T09:14:05+08:00",
          "body": {"item": "i"}})
def test_any_python_value(value):
    expect_event_or_error(parse_event, value)


def test_deeply_nested_python_value_is_an_event_error():
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    expect_event_or_error(parse_event, {"id": "x", "type": "like", "body": {"item": nested}})


def test_huge_text_names_the_field():
    ev = event("post_created", text="加" * 1_000_000)
    try:
        parse_event_json(orjson.dumps(ev))
    except EventError as exc:
        assert [e["field"] for e in exc.errors] == ["body.text"]
    else:
        raise AssertionError("a million-character text was accepted")
