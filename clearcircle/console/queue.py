"""Queue, case and appeal pages: what a moderator works through. Every read and every step is a call to
clearcircle.review (priorities, claims, decisions, reversals and labels are the core's); this module only
shows them and turns form posts into those calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Form, Request
from starlette.responses import RedirectResponse, Response

from clearcircle import review
from clearcircle.console.reads import account_decisions
from clearcircle.console.session import Staff, staff
from clearcircle.console.templating import render
from clearcircle.console.views import highlight, images, timeline, unplaced_evidence
from clearcircle.review.queue import CASE_ACTIONS
from clearcircle.store.repository import now_ms

MODERATORS = ("moderator", "admin")
Reason = Annotated[str, Form(min_length=1, max_length=2000)]


def _base(request: Request) -> str:
    return request.scope.get("root_path", "")


def routes(console: FastAPI) -> None:
    moderator = staff(*MODERATORS)

    @console.get("/queue", name="queue")
    def queue_page(request: Request, mine: bool = False, who: Staff = Depends(moderator)) -> Response:
        """Open and escalated cases, highest priority (severity x reach x confidence) first."""
        service = request.app.state.service
        cases = review.list_cases(service.store, service.pack.settings, claimed_by=who.actor if mine else None,
                                  limit=200)
        appeals = review.list_appeals(service.store, "open", limit=50)
        return render(request, "queue.html", who, cases=cases, mine=mine, appeals=appeals)

    @console.get("/cases/{case_id}", name="case")
    def case_page(request: Request, case_id: int, who: Staff = Depends(moderator)) -> Response:
        """Everything to decide a case: evidence marked in the original text, images, the account's state and
        timeline, the reports against it, other cases."""
        service = request.app.state.service
        detail = review.case_detail(service.store, service.pack.settings, case_id)
        event, decision = detail["event"], detail["decision"] or {}
        evidence = decision.get("evidence", [])
        account = detail["case"]["account"]
        history = service.store.account_history(account, 50)
        return render(request, "case.html", who, d=detail, measures=CASE_ACTIONS, case=detail["case"], event=event,
                      decision=decision, fields=highlight(event, evidence), loose=unplaced_evidence(event, evidence),
                      images=images(event),
                      signals=[e for e in evidence if e.get("signal") != "text.evidence"],
                      timeline=timeline(history["changes"], account_decisions(service.store, account, 50)),
                      flash=request.session.pop("flash", None))

    @console.post("/cases/{case_id}/claim", name="claim")
    def claim(request: Request, case_id: int, who: Staff = Depends(moderator)) -> Response:
        """Claim a case; from the queue (htmx) the row is swapped for its claimed state."""
        service = request.app.state.service
        case = review.claim_case(service, case_id, who.actor)
        if request.headers.get("hx-request"):
            return render(request, "_case_row.html", who, c=case)
        return RedirectResponse(f"{_base(request)}/cases/{case_id}", status_code=303)

    @console.post("/cases/{case_id}/decide", name="decide")
    def decide(request: Request, case_id: int, decision: Annotated[str, Form()], reason: Reason,
               action: Annotated[str, Form(max_length=20)] = "", days: Annotated[str, Form(max_length=5)] = "",
               who: Staff = Depends(moderator)) -> Response:
        """uphold / overturn / escalate with a reason; an overturn reverses what the case's event did; an uphold
        may add a measure (`action`, `days`), which the core applies as a moderator_action event."""
        if days and not days.isdigit():
            raise review.ReviewError("days: a whole number of days")
        result = review.decide_case(request.app.state.service, case_id, decision, reason, who.actor,
                                    action=action or None, days=int(days) if days else None)
        reversed_ = [c["detail"].get("changed") for c in result.get("changes", [])]
        applied = result.get("action")
        request.session["flash"] = (f"Case {case_id}: {result['status']}"
                                    + (f"; reversed {reversed_}" if reversed_ else "")
                                    + (f"; applied {applied['verdict']}" if applied else "")
                                    + ("" if result["changed"] else " (already decided so)"))
        return RedirectResponse(f"{_base(request)}/cases/{case_id}", status_code=303)

    @console.get("/appeals/{appeal_id}", name="appeal")
    def appeal_page(request: Request, appeal_id: int, who: Staff = Depends(moderator)) -> Response:
        """An account owner's appeal: the appealed decision with its evidence, and the account now."""
        service = request.app.state.service
        appeal = review.get_appeal(service.store, appeal_id)
        decision = service.store.decision(appeal.event_id) or {}
        state = service.store.account_state(appeal.account)
        return render(request, "appeal.html", who, appeal=appeal, decision=decision,
                      view=None if state is None else state.view(now_ms()).model_dump(),
                      flash=request.session.pop("flash", None))

    @console.post("/appeals/{appeal_id}/decide", name="decide_appeal")
    def decide_appeal(request: Request, appeal_id: int, decision: Annotated[str, Form()], reason: Reason,
                      who: Staff = Depends(moderator)) -> Response:
        appeal, changed = review.decide_appeal(request.app.state.service, appeal_id, decision, reason, who.actor)
        request.session["flash"] = f"Appeal {appeal_id}: {appeal.status}" + ("" if changed else " (unchanged)")
        return RedirectResponse(f"{_base(request)}/appeals/{appeal_id}", status_code=303)
