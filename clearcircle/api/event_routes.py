"""The hot routes, POST /v1/events and /v1/events/batch: what they answer, and an ASGI fast path serving them.

Why a fast path: profiled under load (docs/hardening.md, Load), Starlette's routing, FastAPI's dependency
solving and request handler and the exception middleware cost a third of the server's CPU per single event,
about as much as the rest of the request outside deciding. `EventFastPath` answers these two exact paths
(POST) itself, inside the metrics, rate-limit and body-limit middleware (so those still count, throttle and
refuse), with the route's own roles for the key, the same parsers and the same error shapes. A single event
decided now has its key checked with the group it is decided in, one query a group on the deciding thread
(api/coalesce.py); an invalid one has it checked before its 422, so a refused caller learns nothing more.
The FastAPI routes stay registered, for the OpenAPI schema and the role table, and call the same
`EventRoutes.answer`, so both paths give the same answers.

`?async=true` publishes the validated events to the event stream instead of deciding them (api/stream_ingest.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request

from clearcircle.api.auth import refusal, role_of
from clearcircle.api.coalesce import Coalescer, Refused
from clearcircle.api.metrics import Metrics
from clearcircle.api.stream_ingest import StreamPublisher, StreamUnavailable
from clearcircle.events.schemas import Event, EventError, parse_batch_json, parse_event_json
from clearcircle.obs.logs import event_context
from clearcircle.service import Service

_decisions_log = logging.getLogger("clearcircle.decisions")
_accepted_log = logging.getLogger("clearcircle.accepted")
PATHS = {"/v1/events": "single", "/v1/events/batch": "batch"}
# pydantic's strings for a bool query parameter (what FastAPI accepts for `async`), lower-cased
_BOOLS = {**dict.fromkeys(("1", "on", "t", "true", "y", "yes"), True),
          **dict.fromkeys(("0", "off", "f", "false", "n", "no"), False)}
_KEY = b"x-api-key"

Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, orjson.dumps(payload), [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]


def http_answer(exc: HTTPException) -> Answer:
    return json_answer(exc.status_code, {"detail": exc.detail}, exc.headers)


def async_flag(query_string: bytes) -> bool | Answer:
    """The `async` query parameter as FastAPI reads a bool (the last value wins), or the 422 it would give."""
    if not query_string or b"async" not in query_string:
        return False
    values = [v for k, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if k == "async"]
    if not values:
        return False
    flag = _BOOLS.get(values[-1].lower())
    if flag is None:
        return json_answer(422, {"detail": "invalid request", "errors": [{
            "field": "query.async", "message": "Input should be a valid boolean, unable to interpret input",
            "type": "bool_parsing"}]})
    return flag


class EventRoutes:
    """Decides (or, with `async`, publishes) the events of one request and builds the response body."""

    def __init__(self, service: Service, metrics: Metrics, stream: StreamPublisher | None,
                 decision_fields: tuple[tuple[str, Any], ...], roles: frozenset[str]) -> None:
        self.service = service
        self.decision_fields = decision_fields  # DecisionOut's fields and defaults, in order (api/app.py)
        self.metrics = metrics
        self.stream = stream
        self.roles = roles  # the roles these routes admit
        self.coalescer = Coalescer(lambda events: service.pipeline.submit(events),  # late-bound: the live pipeline
                                   admit=self._refusals, linger=service.settings.coalesce_linger_ms / 1000)

    def _refusals(self, keys: set[str]) -> dict[str, Exception]:
        """The keys of a group of single events refused (api/coalesce.py), each with its 401 or 403."""
        refusals = {k: refusal(role, self.roles) for k, role in self.service.store.key_roles(keys).items()}
        return {k: r for k, r in refusals.items() if r is not None}

    async def answer(self, route: str, body: bytes, is_async: bool, key: str | None = None) -> Answer:
        """The status, JSON body and extra headers for one request whose key was admitted or, for a single
        event decided now, is given here to be checked with the group it is decided in (api/coalesce.py)."""
        assert key is None or (route == "single" and not is_async), "only single events are checked in groups"
        try:
            if is_async:
                return await self._accept(route, body)
            if route == "single":
                event = parse_event_json(body)
                with event_context(event.id):
                    # the wire shape of DecisionOut, serialised once by orjson (no second validation by the model)
                    return 200, orjson.dumps((await self.decide([event], route, key))[0]), []
            events = parse_batch_json(body, self.service.settings.max_batch)
            return 200, orjson.dumps({"decisions": await self.decide(events, route)}), []
        except EventError as exc:
            if key is not None:  # the key first, as for every request: a refused caller learns nothing more
                refused = refusal(await role_of(self.service.store, key), self.roles)
                if refused is not None:
                    return http_answer(refused)
            return json_answer(422, {"detail": "invalid event", "errors": exc.errors})
        except Refused as exc:
            assert isinstance(exc.error, HTTPException)
            return http_answer(exc.error)

    async def decide(self, events: list[Event], route: str, key: str | None = None) -> list[dict[str, Any]]:
        """Run the pipeline off the event loop; count, time and log each decision (with its event id). A single
        event's `key`, if given, is checked with the group it is decided in."""
        started = time.perf_counter()
        if route == "single":  # grouped with the other single events waiting (api/coalesce.py)
            outcomes = [await self.coalescer.decide(events[0], key)]
        else:
            outcomes = await run_in_threadpool(self.service.pipeline.submit, events)
        self.metrics.observe(route, [e.type for e in events], outcomes, time.perf_counter() - started)
        out = []
        fields = self.decision_fields
        log = _decisions_log.isEnabledFor(logging.INFO)
        for event, outcome in zip(events, outcomes, strict=True):
            d = outcome.decision
            if log:
                _decisions_log.info("decided", extra={"event_id": event.id, "type": event.type,
                                                      "verdict": d["verdict"], "rules": d["rules"],
                                                      "duplicate": outcome.duplicate})
            out.append({**{k: d.get(k, v) for k, v in fields}, "duplicate": outcome.duplicate})
        return out

    async def _accept(self, route: str, body: bytes) -> Answer:
        """async=true: validate like the synchronous route, publish each event to its account's partition, 202."""
        if self.stream is None:
            return json_answer(409, {"detail": "async=true needs an event stream, and this server has none "
                                               "configured (CLEARCIRCLE_STREAM_URL or `serve --stream "
                                               "redis://HOST:PORT/NAME`); send without async to be decided now"})
        if route == "single":
            items = [(parse_event_json(body), body)]
        else:
            events = parse_batch_json(body, self.service.settings.max_batch)
            # each event's JSON as sent, for the workers' parser (pydantic accepted the body; orjson is as strict)
            try:
                raw = orjson.loads(body)["events"]
            except orjson.JSONDecodeError as exc:
                raise EventError([{"field": "(event)", "message": f"invalid JSON: {exc}", "type": "json"}]) from None
            items = list(zip(events, map(orjson.dumps, raw), strict=True))
        try:
            await run_in_threadpool(self.stream.publish, items)
        except StreamUnavailable as exc:
            return json_answer(503, {"detail": f"{exc}; nothing is decided yet, send again (a repeated event id "
                                               "gets its first decision)"}, {"Retry-After": "1"})
        self.metrics.accepted([e.type for e, _ in items])
        if _accepted_log.isEnabledFor(logging.INFO):
            for event, _ in items:
                _accepted_log.info("published", extra={"event_id": event.id, "type": event.type,
                                                       "stream": self.stream.name})
        return 202, orjson.dumps({"accepted": [e.id for e, _ in items], "stream": self.stream.name}), []


class EventFastPath:
    """ASGI middleware answering POST /v1/events and /v1/events/batch without the router (see the module doc);
    every other request goes on to the app."""

    def __init__(self, app: Any, routes: EventRoutes, auth: Callable[..., Awaitable[str]]) -> None:
        self.app = app
        self.routes = routes
        self.auth = auth  # the routes' `require(...)` dependency: the same check, the same 401/403

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = PATHS.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            return await self.app(scope, receive, send)
        answer = await self._serve(scope, receive, route)
        if answer is None:
            return  # the client went away
        status, body, headers = answer
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, scope: dict[str, Any], receive: Any, route: str) -> Answer | None:
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == _KEY), None)
        flag = async_flag(scope.get("query_string", b""))
        # a single event decided now has its key checked with its group, in one query (api/coalesce.py)
        deferred = key if key and route == "single" and flag is False else None
        if deferred is None:
            try:
                await self.auth(Request(scope), key)
            except HTTPException as exc:
                return http_answer(exc)
            if not isinstance(flag, bool):
                return flag
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return await self.routes.answer(route, b"".join(chunks), flag, deferred)
