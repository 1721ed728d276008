"""HTTP routes for people in the loop (issue 6): the review queue, appeals, rule statistics, backtests and
transparency reports, over clearcircle.review.

Roles (least privilege, clearcircle/api/auth.py): moderators work the queue and decide appeals (admins may read
them); the integrator files an appeal on behalf of the account owner (the platform's backend is where the owner
asks); admins run backtests; compliance staff read transparency reports. Who acted is the API key's name.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from clearcircle.api.auth import require
from clearcircle.api.pack_files import write_pack_files
from clearcircle.policy.pack import PackError, load_pack
from clearcircle.review import appeals as appeal_steps
from clearcircle.review import queue
from clearcircle.review.backtest import backtest
from clearcircle.review.errors import Conflict, NotFound, ReviewError
from clearcircle.review.stats import rule_stats
from clearcircle.review.transparency import transparency_report
from clearcircle.service import Service
from clearcircle.store import tables as t

Text = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"\S")]
AccountId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
Month = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, in the pack's time zone")]


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    moderator: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="who takes it; default the caller's key name")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    moderator: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class CaseDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["uphold", "overturn", "escalate"]
    reason: Text
    action: Literal["label", "limit_reach", "remove", "restrict", "suspend", "ban"] | None = Field(
        None, description="with uphold: a measure to take, applied as a moderator_action event")
    duration_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class AppealIn(BaseModel):
    """The account owner's appeal, filed by the platform's backend on their behalf."""

    model_config = ConfigDict(extra="forbid")
    account: AccountId
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    statement: Text


class AppealDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["uphold", "overturn"]
    reason: Text


class BacktestIn(BaseModel):
    """A changed pack sent as files (as for POST /v1/policy/validate), optionally one rule of it only."""

    model_config = ConfigDict(extra="forbid")
    files: dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=2_000_000)]]
    since: datetime | None = Field(None, description="RFC 3339: compare events that occurred from then on")
    rule: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")] | None = None
    max_changes: Annotated[int, Field(ge=0, le=5000)] = 200


def _refused(exc: ReviewError) -> HTTPException | JSONResponse:
    if isinstance(exc, NotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, Conflict):
        return HTTPException(409, str(exc))
    field, _, message = str(exc).partition(": ")
    return JSONResponse({"detail": "invalid request", "errors": [
        {"field": f"body.{field}", "message": message or str(exc), "type": "value_error"}]}, status_code=422)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a review step, turning its refusals into 404 / 409 / 422."""
    try:
        return fn(*args, **kwargs)
    except ReviewError as exc:
        refusal = _refused(exc)
        if isinstance(refusal, HTTPException):
            raise refusal from None
        return refusal


def caller(request: Request) -> str:
    """Who is calling, for the audit trail and claims: `key:<name>` of the API key (already checked)."""
    secret = request.headers.get("X-API-Key", "")
    digest = hashlib.sha256(secret.encode()).hexdigest()
    with request.app.state.service.store.reads.connect() as conn:
        name = conn.execute(select(t.api_keys.c.name).where(t.api_keys.c.key_hash == digest)).scalar_one_or_none()
    return f"key:{name or 'unknown'}"


def _at(at: datetime | None) -> int | None:
    if at is None:
        return None
    if at.tzinfo is None:
        raise HTTPException(422, "a time needs a time-zone offset")
    return int(at.timestamp() * 1000)


def register(app: FastAPI, service: Service) -> None:
    """Add the review, appeal, rule-statistics, backtest and transparency routes to the app."""
    store = service.store
    moderators = require("moderator")
    queue_readers = require("moderator", "admin")
    integrator = require("integrator")
    appeal_readers = require("integrator", "moderator", "admin")
    admin = require("admin")
    stats_readers = require("moderator", "admin", "compliance")
    compliance = require("compliance")

    # -- the review queue -----------------------------------------------------------------------------------
    @app.get("/v1/cases", tags=["review"])
    def list_cases(status: str = Query("open,escalated", description="comma-separated: open, escalated, upheld, "
                                                                      "overturned"),
                   account: str | None = None, source: str | None = None, claimed_by: str | None = None,
                   limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0),
                   _role: str = Depends(queue_readers)) -> dict[str, Any]:
        """Cases, highest priority first (severity x reach x confidence; see clearcircle.review.queue)."""
        statuses = tuple(s for s in status.split(",") if s)
        bad = [s for s in statuses if s not in ("open", "escalated", "upheld", "overturned")]
        if bad or not statuses:
            raise HTTPException(422, f"status: unknown {', '.join(bad) or '(none)'}; one or more of open, "
                                     "escalated, upheld, overturned")
        cases = queue.list_cases(store, service.pack.settings, status=statuses, account=account, source=source,
                                 claimed_by=claimed_by, limit=limit, offset=offset)
        return {"cases": [c.to_dict() for c in cases]}

    @app.get("/v1/cases/{case_id}", tags=["review"])
    def get_case(case_id: int, _role: str = Depends(queue_readers)) -> Any:
        """The case with its event, decision and evidence, the account's state, reports and labels."""
        return _run(queue.case_detail, store, service.pack.settings, case_id)

    @app.post("/v1/cases/{case_id}/claim", tags=["review"], response_model=None)
    def claim_case(case_id: int, request: Request, body: ClaimIn | None = None,
                   _role: str = Depends(moderators)) -> Any:
        """Take the case (409 while another moderator's claim holds)."""
        who = (body.moderator if body and body.moderator else None) or caller(request)
        case = _run(queue.claim_case, service, case_id, who)
        return case if isinstance(case, JSONResponse) else {"case": case.to_dict()}

    @app.post("/v1/cases/{case_id}/assign", tags=["review"], response_model=None)
    def assign_case(case_id: int, body: AssignIn, request: Request, _role: str = Depends(moderators)) -> Any:
        """Give the case to a moderator, whoever held it."""
        case = _run(queue.assign_case, service, case_id, body.moderator, caller(request))
        return case if isinstance(case, JSONResponse) else {"case": case.to_dict()}

    @app.post("/v1/cases/{case_id}/decide", tags=["review"], response_model=None)
    def decide_case(case_id: int, body: CaseDecisionIn, request: Request, _role: str = Depends(moderators)) -> Any:
        """uphold / overturn / escalate with a reason; the same decision again changes nothing, another is 409."""
        return _run(queue.decide_case, service, case_id, body.decision, body.reason, caller(request),
                    action=body.action, days=body.duration_days)

    # -- appeals ----------------------------------------------------------------------------------------------
    @app.post("/v1/appeals", tags=["appeals"], response_model=None)
    def file_appeal(body: AppealIn, request: Request, _role: str = Depends(integrator)) -> Any:
        """File the owner's appeal of what one event did to their account (`created: false`: already open)."""
        result = _run(appeal_steps.file_appeal, store, body.account, body.event_id, body.statement, caller(request))
        if isinstance(result, JSONResponse):
            return result
        appeal, created = result
        return {"appeal": appeal.to_dict(), "created": created}

    @app.get("/v1/appeals", tags=["appeals"], response_model=None)
    def list_appeals(status: str | None = Query("open", description="open, upheld, overturned; 'all' for every"),
                     account: str | None = None, limit: int = Query(100, ge=1, le=1000),
                     offset: int = Query(0, ge=0), _role: str = Depends(appeal_readers)) -> Any:
        found = _run(appeal_steps.list_appeals, store, None if status == "all" else status, account, limit, offset)
        return found if isinstance(found, JSONResponse) else {"appeals": [a.to_dict() for a in found]}

    @app.get("/v1/appeals/{appeal_id}", tags=["appeals"], response_model=None)
    def get_appeal(appeal_id: int, _role: str = Depends(appeal_readers)) -> Any:
        appeal = _run(appeal_steps.get_appeal, store, appeal_id)
        return appeal if isinstance(appeal, JSONResponse) else {"appeal": appeal.to_dict()}

    @app.post("/v1/appeals/{appeal_id}/decide", tags=["appeals"], response_model=None)
    def decide_appeal(appeal_id: int, body: AppealDecisionIn, request: Request,
                      _role: str = Depends(moderators)) -> Any:
        """Uphold or overturn; an overturn reverses the action completely (restrictions, strikes, labels, reach)."""
        result = _run(appeal_steps.decide_appeal, service, appeal_id, body.decision, body.reason, caller(request))
        if isinstance(result, JSONResponse):
            return result
        appeal, changed = result
        return {"appeal": appeal.to_dict(), "changed": changed}

    # -- rule statistics and the workbench ----------------------------------------------------------------------
    @app.get("/v1/rules/stats", tags=["policy"])
    def get_rule_stats(since: datetime | None = Query(None, description="RFC 3339; default: everything"),
                       until: datetime | None = Query(None, description="RFC 3339; default: now"),
                       _role: str = Depends(stats_readers)) -> dict[str, Any]:
        """Every rule's live figures, shadow-mode rules included: hits, accounts, and precision from labels."""
        stats = rule_stats(store, service.pack, _at(since), _at(until))
        return {"pack_version": service.pack.version, "rules": [s.to_dict() for s in stats]}

    @app.post("/v1/backtest", tags=["policy"], response_model=None)
    async def run_backtest(body: BacktestIn, _role: str = Depends(admin)) -> Any:
        """Replay the stored events under a changed pack (or one rule of it) without acting; the difference."""
        since_ms = _at(body.since)
        root = Path(tempfile.mkdtemp(prefix="cc-pack-"))
        try:
            write_pack_files(body.files, root)
            try:
                candidate = load_pack(root, service.pipeline.registry)
            except PackError as exc:
                return JSONResponse({"detail": "invalid policy pack", "problems": [vars(p) for p in exc.problems]},
                                    status_code=422)
            result = await run_in_threadpool(_run, backtest, store, candidate, since_ms, body.rule, service.pack,
                                             body.max_changes)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return result if isinstance(result, JSONResponse) else result.to_dict()

    # -- transparency reports (S11) --------------------------------------------------------------------------------
    @app.get("/v1/reports/transparency", tags=["reports"], response_model=None)
    def get_transparency(month: Month, _role: str = Depends(compliance)) -> Any:
        """The month's figures: actions by category, account type and action; appeals; time to action."""
        report = _run(transparency_report, store, service.pack, month)
        return report if isinstance(report, JSONResponse) else report.to_dict()

    @app.get("/v1/reports/transparency.html", tags=["reports"], response_class=HTMLResponse, response_model=None)
    def get_transparency_html(month: Month, _role: str = Depends(compliance)) -> Any:
        """The same report as an HTML page with its charts inline (PNG)."""
        report = _run(transparency_report, store, service.pack, month)
        return report if isinstance(report, JSONResponse) else HTMLResponse(report.html())
