"""Where decisions go out: an output stream, and a webhook deliverer that reads that stream.

The worker writes each committed batch's decisions to `NAME:decisions` before it acknowledges the batch, so
a decision is never lost between the store and the stream (a crash in between redelivers the events, whose
stored decisions come back as duplicates and are written again: at least once, deduplicate by event_id).

The webhook deliverer is a separate consumer group (`webhook`) on that stream, run in a thread beside the
deciding loop: a slow or failing webhook only makes it lag, it never blocks deciding. Each decision is
POSTed with `X-ClearCircle-Signature: sha256=<hex HMAC-SHA256 of the body>`, retried with backoff, and
acknowledged only on a 2xx answer; after `max_attempts` failures it is moved to `NAME:webhook-dead` (kept,
not lost). Several deliverers (one per worker) share the group; one that dies leaves its pending decisions
to the others after the claim timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from clearcircle.stream.redis_streams import StreamAddress, ensure_group

log = logging.getLogger(__name__)

WEBHOOK_GROUP = "webhook"
DECISION = b"decision"
DUPLICATE = b"duplicate"


# ARGV: maxlen, then decision, duplicate flag, decision, flag, ...: one XADD each, in order, under the
# field names DECISION and DUPLICATE
_XADD_ALL = f"""
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', '{DECISION.decode()}', ARGV[i], '{DUPLICATE.decode()}',
             ARGV[i + 1])
end
return (#ARGV - 1) / 2
"""
_PER_CALL = 1000  # decisions per script call


class RedisDecisionStream:
    """A DecisionSink: XADD each decision to `NAME:decisions`, trimmed to about `maxlen` entries.

    A batch's entries are added by one script call (a thousand at most), not one pipelined XADD each: the
    client packs one command instead of hundreds, which was about 8% of a stream worker's CPU."""

    def __init__(self, client: redis.Redis, address: StreamAddress, maxlen: int = 1_000_000) -> None:
        self.client = client
        self.key = address.decisions_key
        self.maxlen = maxlen
        self._add_all = client.register_script(_XADD_ALL)

    def send(self, decisions: Sequence[tuple[dict[str, Any], bool]]) -> None:
        for start in range(0, len(decisions), _PER_CALL):
            args: list[Any] = [self.maxlen]
            for decision, duplicate in decisions[start : start + _PER_CALL]:
                args += (orjson.dumps(decision), b"1" if duplicate else b"0")
            self._add_all(keys=[self.key], args=args)


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: a receiver recomputes it over the raw body with the shared secret."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookDeliverer:
    """POSTs every decision of the decisions stream to one URL, at least once, signed (module doc)."""

    def __init__(self, client: redis.Redis, address: StreamAddress, url: str, secret: bytes, consumer: str,
                 claim_ms: int = 30_000, max_attempts: int = 12, timeout_s: float = 10.0,
                 backoff_s: float = 0.5, backoff_cap_s: float = 30.0) -> None:
        self.client = client
        self.key = address.decisions_key
        self.dead_key = f"{address.name}:webhook-dead"
        self.url = url
        self.secret = secret
        self.me = consumer
        self.claim_ms = claim_ms
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.delivered = 0
        ensure_group(client, self.key, WEBHOOK_GROUP)

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set: entries left by dead deliverers, then this one's pending, then new."""
        while not stop.is_set():
            try:
                self._claim_orphans()
                rows = self._read("0") or self._read(">", block_ms=1000)
                for n, (entry_id, fields) in enumerate(rows):
                    waiting = [eid for eid, _f in rows[n + 1 :]]
                    if stop.is_set() or not self._deliver(entry_id, fields, stop, waiting):
                        break
            except redis.RedisError as exc:
                log.warning("webhook deliverer: %s", exc)
                stop.wait(1.0)

    def _claim_orphans(self) -> None:
        self.client.xautoclaim(self.key, WEBHOOK_GROUP, self.me, self.claim_ms, count=100, justid=True)

    def _read(self, position: str, block_ms: int | None = None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply = self.client.xreadgroup(WEBHOOK_GROUP, self.me, {self.key: position}, count=100, block=block_ms)
        return reply[0][1] if reply else []

    def _deliver(self, entry_id: bytes, fields: dict[bytes, bytes] | None, stop: threading.Event,
                 waiting: list[bytes]) -> bool:
        """One decision, retried until a 2xx (acked), `max_attempts` failures (moved aside) or stop (left
        pending). `waiting`: the entries read after it, kept claimed while it is retried. Returns False when
        stopped."""
        body = (fields or {}).get(DECISION)
        if body is None:  # trimmed from the stream before it was delivered: nothing left to send
            log.error("webhook: decision entry %s was trimmed before delivery", entry_id.decode())
            self.client.xack(self.key, WEBHOOK_GROUP, entry_id)
            return True
        event_id = orjson.loads(body).get("event_id", "")
        headers = {"Content-Type": "application/json", "X-ClearCircle-Signature": sign(self.secret, body),
                   "X-ClearCircle-Event-Id": str(event_id)}
        for attempt in range(1, self.max_attempts + 1):
            problem = self._post(body, headers)
            if problem is None:
                self.client.xack(self.key, WEBHOOK_GROUP, entry_id)
                self.delivered += 1
                return True
            log.warning("webhook: %s for %s (attempt %d of %d)", problem, event_id, attempt, self.max_attempts)
            # still ours: reset the idle time of this entry and of those waiting behind it, so no other
            # deliverer claims them (and sends them twice) while this one is retried
            self.client.xclaim(self.key, WEBHOOK_GROUP, self.me, 0, [entry_id, *waiting], justid=True)
            if stop.wait(min(self.backoff_cap_s, self.backoff_s * 2 ** (attempt - 1))):
                return False
        self.client.xadd(self.dead_key, {DECISION: body, b"reason": problem.encode()})
        self.client.xack(self.key, WEBHOOK_GROUP, entry_id)
        log.error("webhook: gave up on %s after %d attempts; kept in %s", event_id, self.max_attempts,
                  self.dead_key)
        return True

    def _post(self, body: bytes, headers: dict[str, str]) -> str | None:
        """None on a 2xx answer, else what went wrong."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 (operator's URL)
                status = response.status
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return f"{exc.__class__.__name__}: {getattr(exc, 'reason', exc)}"
        return None if 200 <= status < 300 else f"HTTP {status}"
