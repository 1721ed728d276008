"""`POST /v1/events?async=true`: validated events go onto the event stream, and the stream's workers decide them.

The API stores nothing in this mode: it checks each event with the same parser as the synchronous route,
puts it in the partition of the account it is about (`stream.base.route`, the same routing as
`clearcircle publish`) and answers 202 with the accepted ids. A worker decides them later (docs/stream.md).

The Redis client is made on first use, not at start, so a server whose stream is away still decides
synchronously; its timeouts are short and it retries once, because a client is waiting for the answer: a
Redis that does not answer is a 503 within seconds, not a hung request (the long-running workers' client in
stream.redis_streams retries for longer).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from clearcircle.events.schemas import Event
from clearcircle.stream.base import StreamError, route
from clearcircle.stream.redis_streams import StreamAddress, open_partitions, ordering_of, publish

TIMEOUT_S = 2.0  # connect and read timeout of one Redis call


class StreamUnavailable(RuntimeError):
    """The stream's Redis could not be reached or failed: the request is a 503 and may be retried."""


class StreamPublisher:
    """Publishes events to one stream (`redis://HOST:PORT/NAME`); thread-safe, blocking (run it off the loop)."""

    def __init__(self, url: str) -> None:
        self.address = StreamAddress.parse(url)  # StreamError for a bad URL: refused at start
        self._client: redis.Redis | None = None
        self._partitions = 0
        self._exact = False
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.address.name

    def _open(self) -> tuple[redis.Redis, int]:
        with self._lock:
            if self._client is None:
                client = redis.Redis.from_url(self.address.redis_url, socket_timeout=TIMEOUT_S,
                                              socket_connect_timeout=TIMEOUT_S, retry=Retry(NoBackoff(), 1),
                                              retry_on_error=[redis.ConnectionError, redis.TimeoutError])
                try:
                    self._partitions = open_partitions(client, self.address, None)  # the stream's own count
                    self._exact = ordering_of(client, self.address) == "exact"
                except BaseException:
                    client.close()
                    raise
                self._client = client
            return self._client, self._partitions

    def publish(self, events: Sequence[tuple[Event, bytes]]) -> int:
        """XADD each (parsed event, its JSON as sent) to its account's partition, in order; returns the count.

        A failure part-way may leave some of the events on the stream: sending them again is safe, a repeated
        event id gets its first decision back."""
        try:
            client, partitions = self._open()
            routed = [route(event, partitions) for event, _data in events]
            return publish(client, self.address, [(home, data, waits) for (home, waits), (_e, data)
                                                  in zip(routed, events, strict=True)], exact=self._exact)
        except (redis.RedisError, OSError, StreamError) as exc:
            raise StreamUnavailable(f"the event stream at {self.address.redis_url.split('@')[-1]} "
                                    f"({self.name}) is unavailable: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
