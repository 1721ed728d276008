"""FastAPI application: post events (one or a batch), read decisions, accounts, the policy pack, the audit.

Event bodies are parsed by the same parser as `replay`, so the HTTP API and the CLI refuse exactly the same
input with the same field paths; the OpenAPI schema still documents every event type.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from clearcircle import __version__
from clearcircle.api import review_routes
from clearcircle.api.auth import require
from clearcircle.api.event_routes import EventFastPath, EventRoutes
from clearcircle.api.metrics import Metrics, MetricsMiddleware
from clearcircle.api.pack_files import write_pack_files
from clearcircle.api.ratelimit import RateLimit, limiter_for
from clearcircle.api.stream_ingest import StreamPublisher
from clearcircle.console import mount as mount_console
from clearcircle.enforcement.state import AccountState
from clearcircle.events.schemas import EVENT_ADAPTER, EventError
from clearcircle.merchants import registry as merchant_registry
from clearcircle.policy.campaigns import (
    CampaignError,
    CampaignSpec,
    campaign_status,
    check_campaign,
    compile_campaign,
)
from clearcircle.policy.pack import PackError, load_pack
from clearcircle.policy.published import read_pack
from clearcircle.service import Service
from clearcircle.signals.quota import quota_report
from clearcircle.store.repository import CampaignConflict, StoredCounters, now_ms

MAX_BODY_BYTES = 16 * 1024 * 1024  # the default of Settings.max_body_bytes
_EVENT_SCHEMA = EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")


def _event_body_spec(batch: bool, max_batch: int = 1000) -> dict[str, Any]:
    one = {k: v for k, v in _EVENT_SCHEMA.items() if k != "$defs"}
    schema = {"type": "object", "required": ["events"],
              "properties": {"events": {"type": "array", "items": one, "maxItems": max_batch}}} if batch else one
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class DecisionOut(BaseModel):
    """A decision as on the wire (see EVENTS.md); `duplicate` says the id was already decided."""

    event_id: str
    verdict: str
    rules: list[str]
    shadow_rules: list[str]
    signals: dict[str, Any]
    evidence: list[dict[str, Any]]
    pack_version: str
    subject: str
    actions: list[dict[str, Any]]
    errors: list[str] = []
    campaigns: list[str] = []  # S12: campaign overlays that changed the decision
    duplicate: bool = False


# DecisionOut's fields in order with their defaults: the event routes build its JSON without the model
_DECISION_FIELDS = tuple((name, f.default) for name, f in DecisionOut.model_fields.items() if name != "duplicate")


class BatchOut(BaseModel):
    decisions: list[DecisionOut]


class AcceptedOut(BaseModel):
    """`?async=true`: the events were valid and are on the stream, in their accounts' partitions; a stream
    worker decides them (read the decision later with GET /v1/decisions/{event_id})."""

    accepted: list[str] = Field(description="the ids of the events put on the stream, in order")
    stream: str = Field(description="the stream's name")


_ASYNC_DOC = ("true: validate the event(s) as usual, then put them on the configured event stream for the stream "
              "workers to decide and answer 202 with their ids, storing nothing (docs/stream.md). 409 when the "
              "server has no stream configured; 503 (Retry-After) when the stream's Redis is unavailable")
_ASYNC_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": AcceptedOut, "description": "async=true: accepted onto the event stream, not decided yet"},
    409: {"description": "async=true, but this server has no event stream configured"},
    503: {"description": "async=true, but the event stream is unavailable; retry"},
}


AccountId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class MerchantApplicationIn(BaseModel):
    """An application filed by compliance staff for an account (the platform's own arrive as events)."""

    model_config = ConfigDict(extra="forbid")
    account: AccountId
    company_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    credit_code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    food_licence: Annotated[str, StringConstraints(max_length=64)] | None = None
    categories: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(max_length=50)]


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    licence_expires: Annotated[date | None, Field(description="ISO date YYYY-MM-DD (Asia/Shanghai); the licence "
                                                              "is valid through this day")] = None

    @field_validator("licence_expires", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)):
            raise ValueError("a date YYYY-MM-DD")
        return value


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class PackFiles(BaseModel):
    """A pack to validate: relative path -> file text (pack.yaml, rules/*.yaml, lists/*.txt)."""

    files: dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=2_000_000)]]


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise EventError([{"field": "(event)", "message": f"invalid JSON: {exc}", "type": "json"}]) from None


class BodyLimit:
    """ASGI middleware refusing bodies over `limit` bytes with 413: by the content-length header, or, for a
    chunked upload that has none, by reading the body (up to the limit) before the app sees it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The 413, built only when sent (a JSONResponse a request was measurable under load)."""
        await _error(413, f"request body over {self.limit} bytes")(scope, receive, send)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None:  # the server holds the body to this length
            if length.isdigit() and int(length) > self.limit:
                return await self._refuse(scope, receive, send)
            return await self.app(scope, receive, send)
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await self._refuse(scope, receive, send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_app(service: Service) -> FastAPI:
    otel = service.settings.otel
    app = FastAPI(title="ClearCircle", version=__version__,
                  description="Governance engine against malicious marketing: events in, decisions out.",
                  telemetry={"tracing": otel, "metrics": otel, "logs": otel})
    app.state.service = service
    integrator = require("integrator")
    readers = require("integrator", "moderator", "admin", "compliance")
    moderator = require("moderator", "admin")
    policy_readers = require("moderator", "admin", "compliance")  # compliance writes campaigns over the rules
    admin = require("admin")
    compliance = require("compliance")
    campaign_writers = require("admin", "compliance")

    @app.exception_handler(EventError)
    async def _event_error(_request: Request, exc: EventError) -> JSONResponse:
        return _error(422, "invalid event", exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
                  for e in exc.errors()]
        return _error(422, "invalid request", errors)

    settings = service.settings
    app.state.metrics = metrics = Metrics(service.store, lambda: service.pipeline.conflicts)  # the live pipeline
    stream = StreamPublisher(settings.stream_url) if settings.stream_url else None  # ?async=true
    app.state.event_routes = events = EventRoutes(service, metrics, stream, _DECISION_FIELDS,
                                                         roles=integrator.allowed_roles)
    # innermost of ours: the two hot event routes are answered here, without the router (api/event_routes.py)
    app.add_middleware(EventFastPath, routes=events, auth=integrator)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    limiter = limiter_for(settings)  # in this process, or shared through Redis (api/ratelimit.py); None: off
    if limiter is not None:  # inside the metrics middleware, so 429s are counted
        app.add_middleware(RateLimit, bucket=limiter)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: serves GET /metrics, counts statuses

    def _response(answer: tuple[int, bytes, list[tuple[bytes, bytes]]]) -> Response:
        status, body, headers = answer
        return Response(body, status_code=status, media_type="application/json",
                        headers={k.decode(): v.decode() for k, v in headers})

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:  # no I/O: on the event loop, not a thread pool hop per probe
        # worker: the process that answered (`serve --workers N` runs N of them behind one port)
        return {"status": "ok", "pack_version": service.pack.version, "worker": os.getpid()}

    # Served by EventFastPath (same answers); these stay for the OpenAPI schema, the role table and as fallback.
    @app.post("/v1/events", tags=["events"], response_model=DecisionOut, responses=_ASYNC_RESPONSES,
              openapi_extra=_event_body_spec(False))
    async def post_event(request: Request, is_async: bool = Query(False, alias="async", description=_ASYNC_DOC),
                         _role: str = Depends(integrator)) -> Response:
        """Decide one event. The same id again returns the first decision with `duplicate: true`."""
        return _response(await events.answer("single", await request.body(), is_async))

    @app.post("/v1/events/batch", tags=["events"], response_model=BatchOut, responses=_ASYNC_RESPONSES,
              openapi_extra=_event_body_spec(True, service.settings.max_batch))
    async def post_batch(request: Request, is_async: bool = Query(False, alias="async", description=_ASYNC_DOC),
                         _role: str = Depends(integrator)) -> Response:
        """Decide up to `max_batch` events in order, atomically: one invalid event refuses the whole batch."""
        return _response(await events.answer("batch", await request.body(), is_async))

    @app.get("/v1/decisions/{event_id:path}", tags=["events"], response_model=DecisionOut)
    def get_decision(event_id: str, _role: str = Depends(readers)) -> DecisionOut:
        decision = service.store.decision(event_id)
        if decision is None:
            raise HTTPException(404, f"no decision for event {event_id!r}")
        return DecisionOut(**decision, duplicate=False)

    @app.get("/v1/accounts/{account_id:path}/history", tags=["accounts"])
    def get_history(account_id: str, limit: int = Query(100, ge=1, le=1000),
                    _role: str = Depends(moderator)) -> dict[str, Any]:
        """Decisions about the account and every change made to its state, newest first."""
        return {"account": account_id, **service.store.account_history(account_id, limit)}

    def _state_at(account_id: str, at: datetime | None) -> tuple[AccountState, int]:
        state = service.store.account_state(account_id)
        if state is None:
            raise HTTPException(404, f"unknown account {account_id!r}")
        if at is not None and at.tzinfo is None:
            raise HTTPException(422, "`at` needs a time-zone offset")
        return state, int((at or datetime.now().astimezone()).timestamp() * 1000)

    @app.get("/v1/accounts/{account_id:path}/quotas", tags=["accounts"])
    def get_quotas(account_id: str, at: datetime | None = Query(None, description="RFC 3339; default now"),
                   _role: str = Depends(policy_readers)) -> dict[str, Any]:
        """The account's quotas (friends, friend requests a day, pushes a day or month): limit, used, left,
        by the pack's limits for its class and the calendar periods of the platform's time zone."""
        state, at_ms = _state_at(account_id, at)
        return quota_report(state.view(at_ms), service.pack.settings, StoredCounters(service.store))

    @app.get("/v1/accounts/{account_id:path}", tags=["accounts"])
    def get_account(account_id: str, at: datetime | None = Query(None, description="RFC 3339; default now"),
                    _role: str = Depends(moderator)) -> dict[str, Any]:
        """The account's state at a moment (default now): expiry is computed, so past measures drop out."""
        state, at_ms = _state_at(account_id, at)
        hidden = {"friends", "ledger", "ledger_base"}  # long lists: the history route shows what happened
        return {"view": state.view(at_ms).model_dump(), "state": state.model_dump(exclude=hidden)}

    @app.get("/v1/policy", tags=["policy"])
    def get_policy(_role: str = Depends(policy_readers)) -> dict[str, Any]:
        pack = service.pack
        return {
            "name": pack.name,
            "version": pack.version,
            "settings": pack.settings.model_dump(),
            "rules": [{**r.spec.model_dump(exclude={"action"}), "action": r.action.model_dump(),
                       "file": r.file, "line": r.line} for r in pack.rules],
        }

    @app.post("/v1/policy/validate", tags=["policy"])
    def validate_policy(pack: PackFiles, _role: str = Depends(admin)) -> dict[str, Any]:
        """Validate a pack sent as files, without loading it: every problem with file, line and rule."""
        root = Path(tempfile.mkdtemp(prefix="cc-pack-"))
        try:
            write_pack_files(pack.files, root)
            try:
                loaded = load_pack(root)
            except PackError as exc:
                return {"valid": False, "problems": [vars(p) for p in exc.problems]}
            return {"valid": True, "version": loaded.version, "rules": len(loaded.rules), "problems": []}
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @app.post("/v1/policy/publish", tags=["policy"], response_model=None)
    def publish_policy(pack: PackFiles, role: str = Depends(admin)) -> Any:
        """Validate a pack sent as files (as /v1/policy/validate does) and publish it: every worker decides with
        it from its next batch, without a restart, and each decision records its version. An invalid pack is a
        422 listing every problem, and nothing is stored; the version already in force is `published: false`."""
        root = Path(tempfile.mkdtemp(prefix="cc-pack-"))
        try:
            write_pack_files(pack.files, root)
            try:
                loaded, files = read_pack(root, service.pipeline.registry)
            except PackError as exc:
                return JSONResponse({"detail": "invalid policy pack, nothing published",
                                     "problems": [vars(p) for p in exc.problems]}, status_code=422)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        seq, published = service.store.publish_pack(loaded.name, loaded.version, files, f"api:{role}")
        return {"published": published, "seq": seq, "name": loaded.name, "version": loaded.version,
                "rules": len(loaded.rules)}

    @app.get("/v1/audit/verify", tags=["audit"])
    def audit_verify(_role: str = Depends(admin)) -> dict[str, Any]:
        checked, findings = service.store.verify_audit()
        return {"ok": not findings, "rows": checked, "findings": [{"seq": f.seq, "problem": f.problem}
                                                                  for f in findings]}

    @app.get("/v1/signals", tags=["policy"])
    def list_signals(_role: str = Depends(readers)) -> list[dict[str, Any]]:
        """Every registered signal: what rule conditions may name."""
        return [{"name": s.name, "version": s.version, "reads": sorted(s.reads),
                 "type": getattr(s.type, "__name__", str(s.type)), "description": s.description}
                for s in service.pipeline.registry]

    _merchant_routes(app, service, compliance, policy_readers)
    _campaign_routes(app, service, campaign_writers, policy_readers)
    review_routes.register(app, service)  # issue 6: review queue, appeals, rule stats, backtest, transparency
    mount_console(app, service)  # issue 6: the moderator console (HTML pages, session login) at /console
    _extend_openapi(app)
    return app


def _invalid(errors: list[dict[str, str]]) -> JSONResponse:
    return _error(422, "invalid request", errors)


def _value_error(exc: ValueError) -> JSONResponse:
    """A ValueError whose message starts with the field it is about ("licence_expires: ...")."""
    field, _, message = str(exc).partition(": ")
    return _invalid([{"field": f"body.{field}", "message": message, "type": "value_error"}])


def _merchant_routes(app: FastAPI, service: Service, compliance: Any, readers: Any) -> None:
    """S10: the registry. Compliance staff file applications and move records; staff read them."""
    store = service.store

    @app.post("/v1/merchants", tags=["merchants"], response_model=None)
    def apply_merchant(body: MerchantApplicationIn, role: str = Depends(compliance)) -> Any:
        """File an application for an account; any broken rule is a 422 naming the field and the rule (events
        stay accepted on the wire and open a rejected record instead)."""
        problems = merchant_registry.validate_application(body.company_name, body.credit_code, body.food_licence,
                                                          body.categories)
        if problems:
            return _invalid([{"field": f"body.{p.field}", "rule": p.rule, "message": p.message, "type": "rule"}
                             for p in problems])
        step = store.merchant_apply(body.account, body.company_name, body.credit_code, body.food_licence,
                                    body.categories, f"api:{role}")
        return {"record": step.record.to_dict(now_ms()), "changed": step.changed}

    @app.get("/v1/merchants", tags=["merchants"])
    def list_merchants(state: str | None = Query(None, description="pending, verified, expired, rejected, revoked"),
                       at: datetime | None = Query(None, description="RFC 3339; default now"),
                       limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0),
                       _role: str = Depends(readers)) -> Any:
        """Records in account order, each with its state at `at` (expiry is computed)."""
        if state is not None and state not in merchant_registry.STATES:
            return _invalid([{"field": "query.state", "message": f"one of {', '.join(merchant_registry.STATES)}",
                              "type": "enum"}])
        at_ms = _at_ms(at)
        return {"at_ms": at_ms, "merchants": [r.to_dict(at_ms) for r in store.merchant_list(state, at_ms, limit,
                                                                                                offset)]}

    def _step(account_id: str, action: str, role: str, **kwargs: Any) -> Any:
        try:
            step = store.merchant_step(account_id, action, f"api:{role}", **kwargs)
        except merchant_registry.NotFound:
            raise HTTPException(404, f"no merchant record for {account_id!r}") from None
        except merchant_registry.TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        except ValueError as exc:
            return _value_error(exc)
        return {"record": step.record.to_dict(now_ms()), "changed": step.changed}

    @app.post("/v1/merchants/{account_id:path}/verify", tags=["merchants"], response_model=None)
    def verify_merchant(account_id: str, body: VerifyIn, role: str = Depends(compliance)) -> Any:
        """pending -> verified, with the licence's expiry date (required with a food licence). Verifying a
        verified record again renews its expiry; a rejected or revoked record is a 409."""
        return _step(account_id, "verify", role, licence_expires=body.licence_expires)

    @app.post("/v1/merchants/{account_id:path}/reject", tags=["merchants"], response_model=None)
    def reject_merchant(account_id: str, body: ReasonIn, role: str = Depends(compliance)) -> Any:
        """pending -> rejected, with the reason."""
        return _step(account_id, "reject", role, reason=body.reason)

    @app.post("/v1/merchants/{account_id:path}/revoke", tags=["merchants"], response_model=None)
    def revoke_merchant(account_id: str, body: ReasonIn, role: str = Depends(compliance)) -> Any:
        """verified -> revoked, with the reason."""
        return _step(account_id, "revoke", role, reason=body.reason)

    @app.get("/v1/merchants/{account_id:path}", tags=["merchants"])
    def get_merchant(account_id: str, at: datetime | None = Query(None, description="RFC 3339; default now"),
                     _role: str = Depends(readers)) -> dict[str, Any]:
        """The record (state at `at`) and every step of its history, oldest first."""
        record = store.merchant(account_id)
        if record is None:
            raise HTTPException(404, f"no merchant record for {account_id!r}")
        return {"record": record.to_dict(_at_ms(at)), "history": store.merchant_history(account_id)}


def _at_ms(at: datetime | None) -> int:
    if at is not None and at.tzinfo is None:
        raise HTTPException(422, "`at` needs a time-zone offset")
    return now_ms() if at is None else int(at.timestamp() * 1000)


def _campaign_routes(app: FastAPI, service: Service, writers: Any, readers: Any) -> None:
    """S12: campaign overlays, created and changed without a deploy; the pipeline picks them up itself."""
    store = service.store

    def _save(spec: CampaignSpec, role: str, mode: str) -> Any:
        try:
            check_campaign(spec, service.pipeline.pack, service.pipeline.registry)
        except CampaignError as exc:
            return _invalid([{**p, "field": f"body.{p['field']}", "type": "campaign"} for p in exc.problems])
        try:
            campaign, change = store.campaign_save(spec.wire(), spec.starts_ms, spec.ends_ms, f"api:{role}", mode)
        except CampaignConflict as exc:
            raise HTTPException(404 if exc.missing else 409, str(exc)) from None
        return {"campaign": _shown(campaign), "change": change}

    @app.post("/v1/campaigns", tags=["campaigns"], response_model=None)
    def create_campaign(spec: CampaignSpec, role: str = Depends(writers)) -> Any:
        """Create a campaign; validated against the live pack like a pack rule. A name is never reused."""
        return _save(spec, role, "create")

    @app.get("/v1/campaigns", tags=["campaigns"])
    def list_campaigns(_role: str = Depends(readers)) -> dict[str, Any]:
        return {"campaigns": [_shown(c) for c in store.campaign_list()]}

    @app.put("/v1/campaigns/{name}", tags=["campaigns"], response_model=None)
    def change_campaign(name: str, spec: CampaignSpec, role: str = Depends(writers)) -> Any:
        """Replace a campaign's definition (kept in its history); an ended campaign cannot change."""
        if spec.name != name:
            return _invalid([{"field": "body.name", "message": f"must be {name!r}, the campaign in the path",
                              "type": "value_error"}])
        return _save(spec, role, "change")

    @app.post("/v1/campaigns/{name}/end", tags=["campaigns"])
    def end_campaign(name: str, role: str = Depends(writers)) -> dict[str, Any]:
        """End a campaign now: events stamped from now on are decided without it. Ending again changes nothing."""
        try:
            campaign, ended = store.campaign_end(name, f"api:{role}")
        except CampaignConflict as exc:
            raise HTTPException(404, str(exc)) from None
        return {"campaign": _shown(campaign), "ended": ended}

    @app.get("/v1/campaigns/{name}", tags=["campaigns"])
    def get_campaign(name: str, _role: str = Depends(readers)) -> dict[str, Any]:
        """The campaign, its history (created, changed, ended), and what of it no longer applies to the live
        pack (an override of a rule the pack has since dropped)."""
        campaign = store.campaign(name)
        if campaign is None:
            raise HTTPException(404, f"no campaign {name!r}")
        spec = CampaignSpec.model_validate(campaign["spec"])
        problems = compile_campaign(spec, service.pipeline.pack, service.pipeline.registry).problems
        return {"campaign": _shown(campaign), "history": store.campaign_history(name), "problems": list(problems)}


def _shown(campaign: dict[str, Any]) -> dict[str, Any]:
    return {**campaign, "status": campaign_status(campaign, now_ms())}


def _extend_openapi(app: FastAPI) -> None:
    """Put the event models into components, so the hand-parsed event routes are fully documented."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(_EVENT_SCHEMA.get("$defs", {}))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
