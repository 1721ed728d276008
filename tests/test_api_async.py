"""`POST /v1/events?async=true` (issue 10): validated events go onto the stream, a stream worker decides them.

Against a real Redis (conftest `redis_url`); the worker runs in-process (Worker + RedisSource in a thread).
Cost: a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import redis
from api_fixtures import event, induced_share_post, open_api
from typer.testing import CliRunner

from clearcircle.cli.main import app
from clearcircle.config import Settings
from clearcircle.devservers import free_port
from clearcircle.events.schemas import parse_event_json
from clearcircle.service import open_service
from clearcircle.stream.base import partition_account, partition_of
from clearcircle.stream.redis_streams import RedisSource, StreamAddress, connect, open_partitions
from clearcircle.stream.worker import Worker


def _stream_url(redis_url: str, name: str) -> str:
    parts = urlsplit(redis_url)
    return f"redis://{parts.hostname}:{parts.port}/{name}"


def _entries(client: redis.Redis, name: str, partitions: int) -> dict[int, list[str]]:
    """Partition -> the event ids on it, in stream order (barriers, which hold no event, left out)."""
    return {i: [orjson.loads(f[b"e"])["id"] for _id, f in client.xrange(f"{name}:p{i}") if b"e" in f]
            for i in range(partitions)}


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/events/batch"])
def test_async_without_a_stream_is_409_with_a_reason_and_stores_nothing(sqlite_url, tmp_path, path):
    with open_api(sqlite_url, tmp_path) as api:
        body = induced_share_post("no-stream") if path == "/v1/events" else {"events": [induced_share_post("nb")]}
        before = api.counts()
        response = api.client.post(f"{path}?async=true", json=body, headers=api.h("integrator"))
        assert response.status_code == 409, response.text
        assert "stream" in response.json()["detail"]
        assert api.counts() == before
        # async=false is the synchronous route; a value that is not a bool is refused like FastAPI would
        assert api.client.post(f"{path}?async=false", json=body, headers=api.h("integrator")).status_code == 200
        bad = api.client.post(f"{path}?async=maybe", json=body, headers=api.h("integrator"))
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.async"
        # the key is checked first, as on the synchronous route
        assert api.client.post(f"{path}?async=true", json=body, headers=api.h("moderator")).status_code == 403


def test_async_publishes_valid_events_to_their_partitions_stores_nothing_and_a_worker_decides_them(
        sqlite_url, redis_url, tmp_path):
    url = _stream_url(redis_url, "api-async")
    address = StreamAddress.parse(url)
    with open_api(sqlite_url, tmp_path, stream_url=url) as api:
        before = api.counts()
        first = induced_share_post("a-1", actor="u-async")
        one = api.client.post("/v1/events?async=true", json=first, headers=api.h("integrator"))
        assert one.status_code == 202, one.text
        assert one.json() == {"accepted": ["a-1"], "stream": "api-async"}
        batch = [event("like", f"a-b{i}", actor=f"u-{i % 5}") for i in range(12)]
        batch.append(event("report", "a-rep", actor="u-reporter", target="u-async"))
        many = api.client.post("/v1/events/batch?async=1", json={"events": batch}, headers=api.h("integrator"))
        assert many.status_code == 202, many.text
        assert many.json()["accepted"] == [e["id"] for e in batch]
        # refused exactly like the synchronous route: 422 naming the field, nothing published
        bad = [event("like", "a-ok"), {**event("like", "a-bad"), "occurred_at": "yesterday"}]
        refused = api.client.post("/v1/events/batch?async=true", json={"events": bad}, headers=api.h("integrator"))
        sync = api.client.post("/v1/events/batch", json={"events": bad}, headers=api.h("integrator"))
        assert refused.status_code == sync.status_code == 422
        assert refused.json() == sync.json()
        assert api.counts() == before, "async=true stored something"
        metrics = api.client.get("/metrics").text
        assert 'clearcircle_events_total{outcome="published",type="like"} 12.0' in metrics
        api.client.app.state.event_routes.stream.close()

    client = connect(address)
    partitions = open_partitions(client, address, None)
    published = _entries(client, "api-async", partitions)
    assert sorted(i for ids in published.values() for i in ids) == sorted(["a-1", *(e["id"] for e in batch)])
    for sent in [first, *batch]:  # each in the partition of the account it is about (a report: its target)
        want = partition_of(partition_account(parse_event_json(orjson.dumps(sent))), partitions)
        assert sent["id"] in published[want]
    assert published[partition_of("u-async", partitions)].index("a-1") < \
        published[partition_of("u-async", partitions)].index("a-rep")  # in the order they were accepted

    service = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k"))
    source = RedisSource(client, address, partitions, lease_ms=3000)
    worker = Worker(source, service.pipeline.submit, [], batch=100, block_ms=200)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _wait(lambda: worker.stats.decided == 1 + len(batch), 60, "the worker to decide the published events")
    finally:
        stop.set()
        thread.join(timeout=30)
        source.close()
    try:
        decision = service.store.decision("a-1")
        assert decision is not None and decision["verdict"] == "limit_reach"
        assert decision["rules"] == ["induced-share-text"]
        assert all(service.store.decision(e["id"]) is not None for e in batch)
    finally:
        service.close()
        client.close()


def test_async_with_the_stream_down_is_503_with_a_reason_and_stores_nothing(sqlite_url, tmp_path: Path):
    url = f"redis://127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    with open_api(sqlite_url, tmp_path, stream_url=url) as api:
        before = api.counts()
        for path, body in (("/v1/events", induced_share_post("down-1")),
                           ("/v1/events/batch", {"events": [event("like", "down-2")]})):
            response = api.client.post(f"{path}?async=true", json=body, headers=api.h("integrator"))
            assert response.status_code == 503, response.text
            assert "unavailable" in response.json()["detail"] and response.headers["retry-after"] == "1"
        assert api.counts() == before
        # the synchronous route does not need the stream
        assert api.post_event(induced_share_post("down-3")).status_code == 200


def test_openapi_documents_the_async_parameter_and_the_202_answer(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path) as api:
        schema = api.client.get("/openapi.json").json()
    for path in ("/v1/events", "/v1/events/batch"):
        operation = schema["paths"][path]["post"]
        assert [p["name"] for p in operation["parameters"] if p["in"] == "query"] == ["async"]
        accepted = operation["responses"]["202"]["content"]["application/json"]["schema"]
        assert accepted == {"$ref": "#/components/schemas/AcceptedOut"}
        assert {"409", "503"} <= operation["responses"].keys()
    assert set(schema["components"]["schemas"]["AcceptedOut"]["properties"]) == {"accepted", "stream"}


def test_serve_refuses_a_bad_stream_url_with_a_message(sqlite_url):
    result = CliRunner().invoke(app, ["serve", "--db", sqlite_url, "--stream", "http://127.0.0.1:6379/events"])
    assert result.exit_code == 2
    assert "redis://HOST:PORT/NAME" in result.output


def test_async_on_an_exact_stream_numbers_events_and_holds_the_reporters_partition(redis_url: str) -> None:
    """On a stream opened as exact (docs/stream.md), the API publishes as `clearcircle publish` does: each
    event numbered in the order of the batch, and a report also holds its reporter's partition (a barrier)."""
    from clearcircle.api.stream_ingest import StreamPublisher

    url = _stream_url(redis_url, "api-exact")
    address = StreamAddress.parse(url)
    client = connect(address)
    partitions = open_partitions(client, address, 4, "exact")
    reporter = next(f"rep-{i}" for i in range(100) if partition_of(f"rep-{i}", 4) != partition_of("u-x", 4))
    sent = [event("like", "x-1", actor="u-x"), event("report", "x-2", actor=reporter, target="u-x")]
    publisher = StreamPublisher(url)
    try:
        assert publisher.publish([(parse_event_json(orjson.dumps(e)), orjson.dumps(e)) for e in sent]) == 2
    finally:
        publisher.close()
    home = client.xrange(f"api-exact:p{partition_of('u-x', partitions)}")
    assert [(i, orjson.loads(f[b"e"])["id"]) for i, f in home] == [(b"1-0", "x-1"), (b"2-0", "x-2")]
    held = client.xrange(f"api-exact:p{partition_of(reporter, partitions)}")
    assert held == [(b"2-0", {b"b": str(partition_of("u-x", partitions)).encode()})]
    client.close()
