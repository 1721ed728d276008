"""What the per-event CPU savings keep (issue 10): each kept or shortened computation gives what the plain one
gave, so decisions, states, audit rows and counter hits stay byte for byte the same.

- calendar windows are kept per local date (signals.counters._window_of), in zones with daylight saving too;
- a short text's pass (lexicon hits and entities) and its marketing score are kept per (text, lexicon/model);
- a registration's identifiers are hashed into a copy of the event, not a re-validated one (Pipeline._prepare);
- after the warm-up, full collections are rare (signals.warmup.FULL_COLLECTION_THRESHOLD), and in a stream
  worker young ones too (BATCH_YOUNG_THRESHOLD).
"""

from __future__ import annotations

import gc
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearcircle.events.identifiers import HASHED_FIELDS
from clearcircle.events.schemas import parse_event
from clearcircle.pipeline import Pipeline
from clearcircle.signals import marketing, text
from clearcircle.signals.classifier import shipped_model
from clearcircle.signals.counters import calendar_window
from clearcircle.signals.lexicon import Lexicon

ZONES = ("Asia/Shanghai", "UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Africa/Casablanca",
         "America/Santiago", "Pacific/Chatham")
SPAN_MS = (1_577_836_800_000, 1_893_456_000_000)  # 2020 to 2030: several daylight-saving changes a zone


def _plain_window(at_ms: int, zone: ZoneInfo, per: str) -> tuple[int, int]:
    """calendar_window as it was before its bounds were kept: everything computed from the instant."""
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    start = datetime(local.year, local.month, 1 if per == "month" else local.day, tzinfo=zone)
    if per == "day":
        nxt = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=zone)
    else:
        nxt = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=zone)
    return round(start.timestamp() * 1000), round(nxt.timestamp() * 1000)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ZONES), st.sampled_from(["day", "month"]), st.integers(*SPAN_MS),
       st.integers(-3 * 3_600_000, 3 * 3_600_000))
def test_a_kept_calendar_window_is_the_one_computed_afresh(name, per, at_ms, step):
    zone = ZoneInfo(name)
    calendar_window(at_ms, zone, per)  # keeps the window of at_ms's date...
    near = at_ms + step  # ...which a nearby instant (maybe another date, maybe across a DST change) must not get
    assert calendar_window(near, zone, per) == _plain_window(near, zone, per)
    assert calendar_window(at_ms, zone, per) == _plain_window(at_ms, zone, per)


def test_calendar_windows_around_daylight_saving_changes():
    zone = ZoneInfo("America/New_York")
    for day in ("2026-03-08", "2026-11-01"):  # spring forward, fall back
        start = int(datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=zone).timestamp() * 1000)
        for minutes in range(-90, 26 * 60, 15):
            at = start + minutes * 60_000
            for per in ("day", "month"):
                assert calendar_window(at, zone, per) == _plain_window(at, zone, per)


def _ctx(body_text: str, lexicon: Lexicon | None, event_id: str = "e1") -> SimpleNamespace:
    event = parse_event({"id": event_id, "type": "post_created", "occurred_at": "2026-03-01T00:00:00Z",
                         "actor": "u1", "body": {"surface": "moments", "text": body_text}})
    return SimpleNamespace(event=event, resources={"lexicon": lexicon}, memo={})


def test_a_repeated_text_gets_the_hits_of_a_fresh_pass():
    lexicon = Lexicon.from_terms({"contact": ["加微信"], "mlm": ["拉人头"]})
    words = "拉人头 赚钱 加 微 信 wx123456 电话 13800138000 ¥99"
    first = text.text_hits(_ctx(words, lexicon))
    again = _ctx(words, lexicon, "e2")
    assert text.text_hits(again) == first
    hits, entities = text.analyse_text(words, lexicon)  # the uncached pass
    assert [fh.hit for fh in first] == hits
    assert [fe.entity for fe in text.text_entities(again)] == entities
    assert {h.category for h in hits} >= {"contact", "mlm"}


def test_a_kept_pass_belongs_to_its_lexicon():
    words = "拉人头 赚大钱"
    with_mlm = Lexicon.from_terms({"mlm": ["拉人头"]})
    without = Lexicon.from_terms({"food": ["火锅"]})
    assert [fh.hit.category for fh in text.text_hits(_ctx(words, with_mlm))] == ["mlm"]
    assert text.text_hits(_ctx(words, without)) == []  # a newly published pack does not see the old pass


def test_a_kept_pass_cannot_be_changed_by_an_event():
    lexicon = Lexicon.from_terms({"mlm": ["拉人头"]})
    hits, entities = text._text_pass("拉人头 拉人头", lexicon)
    assert isinstance(hits, tuple) and isinstance(entities, tuple)
    ctx = _ctx("拉人头 拉人头", lexicon)
    text.text_hits(ctx).clear()  # an event's own list: the kept pass is untouched
    assert len(text.text_hits(_ctx("拉人头 拉人头", lexicon, "e3"))) == 2


def test_a_long_text_is_analysed_and_not_kept():
    lexicon = Lexicon.from_terms({"mlm": ["拉人头"]})
    long_text = "拉人头" + "好" * text.KEPT_TEXT_CHARS
    before = text._kept_pass.cache_info().currsize
    hits, _entities = text._text_pass(long_text, lexicon)
    assert [h.category for h in hits] == ["mlm"]
    assert text._kept_pass.cache_info().currsize == before


def test_a_kept_marketing_score_is_the_models_score():
    model = shipped_model()
    for words in ("周末一起吃火锅吧", "加微信领取优惠券 限时秒杀 最后三天", "Great dinner with old friends tonight"):
        assert marketing._kept_score(model, words) == model.score(words)
        assert marketing._kept_score(model, words) == model.score(words)  # and when kept


@pytest.mark.parametrize("body", [
    {"account_type": "personal", "phone": "+86 138-0013-8000", "device_id": "DEV-1", "display_name": "小王"},
    {"account_type": "service", "payment_id": "pay-9", "id_number": "110101199003077777"},
    {"account_type": "personal", "device_id": "h1:" + "a" * 64},  # already hashed: kept as it is
])
def test_a_registration_is_hashed_as_a_revalidated_copy_would_be(body):
    event = parse_event({"id": "r1", "type": "account_registered", "occurred_at": "2026-03-01T08:00:00+08:00",
                         "actor": "u1", "body": body})
    pipeline = SimpleNamespace(hash_key=b"test-key")
    hashed = Pipeline._prepare(pipeline, event)  # type: ignore[arg-type]
    wire = event.wire()
    wire["body"] = {**wire["body"], **{f: getattr(hashed.body, f) for f in HASHED_FIELDS}}
    assert hashed.model_dump_json() == parse_event(wire).model_dump_json()
    for field in HASHED_FIELDS:
        raw = body.get(field)
        assert (getattr(hashed.body, field) is None) == (raw is None)
        if raw is not None and not raw.startswith("h1:"):
            assert getattr(hashed.body, field).startswith("h1:") and raw not in hashed.model_dump_json()


def test_a_registration_without_identifiers_is_the_same_event():
    event = parse_event({"id": "r2", "type": "account_registered", "occurred_at": "2026-03-01T00:00:00Z",
                         "actor": "u2", "body": {"account_type": "personal", "display_name": "x"}})
    assert Pipeline._prepare(SimpleNamespace(hash_key=b"k"), event) is event  # type: ignore[arg-type]


def test_after_the_warm_up_full_collections_are_rare():
    from clearcircle.signals.warmup import FULL_COLLECTION_THRESHOLD, warm_up

    before = gc.get_threshold()
    try:
        warm_up()
        assert gc.get_threshold() == (before[0], before[1], FULL_COLLECTION_THRESHOLD)
        assert FULL_COLLECTION_THRESHOLD > before[2]
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _young_collections(objects: int) -> int:
    """Young collections while `objects` containers are made and kept (as a unit's rows and states are)."""
    before = gc.get_stats()[0]["collections"]
    kept = [{"n": n} for n in range(objects)]
    made = gc.get_stats()[0]["collections"] - before
    del kept
    return made


def test_a_stream_worker_collects_young_objects_far_less_often_and_serve_as_cpython_does():
    from clearcircle.signals.warmup import BATCH_YOUNG_THRESHOLD, warm_up

    before = gc.get_threshold()
    try:
        warm_up()  # serve: requests wait on each pass, so passes stay short
        assert gc.get_threshold()[0] == before[0]
        served = _young_collections(100_000)
        warm_up(batches=True)  # clearcircle worker
        assert gc.get_threshold()[0] == BATCH_YOUNG_THRESHOLD > before[0]
        batched = _young_collections(100_000)
        assert served >= 100_000 // before[0] // 2 and batched <= 100_000 // BATCH_YOUNG_THRESHOLD + 1
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
