"""Limits with clear errors: body size (413), batch size and text length (422 naming the field), per-key rate (429).

A refused request stores nothing. The token bucket is checked with an injected clock, the API with a tiny rate.
"""

from __future__ import annotations

import orjson
import pytest
import redis
from api_fixtures import event, open_api

from clearcircle.api.ratelimit import TokenBucket
from clearcircle.config import Settings
from clearcircle.events.schemas import MAX_TEXT


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take(b"k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(b"k") == pytest.approx(0.5)  # one token comes back in 1/rate s
    assert bucket.take(b"other") == 0.0  # buckets are per key
    clock.now += 0.5
    assert bucket.take(b"k") == 0.0
    clock.now += 100
    assert [bucket.take(b"k") for _ in range(4)][-1] > 0  # never more than the burst


def test_bucket_is_bounded():
    bucket = TokenBucket(rate=1, burst=1, max_keys=10, clock=Clock())
    for i in range(1000):
        bucket.take(str(i).encode())
    assert len(bucket._buckets) == 10


def test_bad_bucket_settings_are_refused():
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_rate_limit_is_429_with_retry_after_per_key_and_stores_nothing(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=3) as api:
        for i in range(3):
            assert api.post_event(event("like", f"ok-{i}")).status_code == 200
        before = api.counts()
        refused = api.post_event(event("like", "refused"))
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "rate limit" in refused.json()["detail"]
        assert api.counts() == before
        assert api.client.get("/v1/decisions/refused", headers=api.h("moderator")).status_code == 404  # own bucket
        wrong = api.client.get("/v1/signals", headers={"X-API-Key": "cc_000000000000_guess"})
        assert wrong.status_code == 401  # unknown keys are throttled separately, and still refused


def test_rate_limit_through_redis_is_429_with_retry_after(sqlite_url, tmp_path, redis_url):
    """With a Redis URL the API's buckets live in Redis (shared by every worker; tests/test_stateless.py runs two
    processes against one): the same answers as the in-process bucket."""
    with open_api(sqlite_url, tmp_path, redis_url=redis_url, rate_limit_per_s=0.05, rate_limit_burst=3) as api:
        for i in range(3):
            assert api.post_event(event("like", f"r-ok-{i}")).status_code == 200
        before = api.counts()
        refused = api.post_event(event("like", "r-refused"))
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 15  # a token every 20 s
        assert "rate limit" in refused.json()["detail"]
        assert api.counts() == before
    with redis.Redis.from_url(redis_url) as client:
        assert len(client.keys("cc:rl:*")) == 1  # the bucket was Redis's (one key: the integrator's digest)


def test_rate_limit_off_with_zero(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path, rate_limit_per_s=0, rate_limit_burst=1) as api:
        assert all(api.post_event(event("like")).status_code == 200 for _ in range(5))


def test_rate_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLEARCIRCLE_RATE_LIMIT_PER_S", "7.5")
    monkeypatch.setenv("CLEARCIRCLE_RATE_LIMIT_BURST", "9")
    settings = Settings()
    assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (7.5, 9)


def test_body_over_the_limit_is_413_by_header_and_when_chunked(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path, max_body_bytes=2048) as api:
        big = orjson.dumps(event("post_created", text="x" * 4000))
        before = api.counts()
        r = api.client.post("/v1/events", content=big, headers={**api.h("integrator"),
                                                                "content-type": "application/json"})
        assert r.status_code == 413 and "2048" in r.json()["detail"]
        chunked = api.client.post("/v1/events", content=iter([big[:1500], big[1500:]]),
                                  headers={**api.h("integrator"), "content-type": "application/json"})
        assert chunked.status_code == 413
        assert api.counts() == before
        assert api.post_event(event("like")).status_code == 200  # small bodies still pass


def test_batch_over_max_batch_is_422_and_stores_nothing(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path, max_batch=5) as api:
        before = api.counts()
        r = api.post_batch([event("like") for _ in range(6)])
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "events" and "at most 5" in r.json()["errors"][0]["message"]
        assert api.counts() == before
        assert api.post_batch([event("like") for _ in range(5)]).status_code == 200


def test_text_over_max_text_is_422_naming_the_field(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path) as api:
        before = api.counts()
        r = api.post_event(event("post_created", text="加" * (MAX_TEXT + 1)))
        assert r.status_code == 422
        assert [e["field"] for e in r.json()["errors"]] == ["body.text"]
        assert api.counts() == before
        assert api.post_event(event("post_created", text="加" * MAX_TEXT)).status_code == 200
