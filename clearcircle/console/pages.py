"""Login, account, rule statistics, merchant registry, campaign and report pages."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from clearcircle import review
from clearcircle.console.reads import account_decisions
from clearcircle.console.session import Forbidden, LoginRequired, Staff, check_csrf, current, log_in, staff
from clearcircle.console.templating import home_of, render
from clearcircle.console.views import bars, timeline
from clearcircle.merchants import registry as merchant_registry
from clearcircle.policy.campaigns import campaign_status
from clearcircle.service import Service
from clearcircle.store.repository import CampaignConflict, now_ms

STAFF_ROLES = ("moderator", "admin", "compliance")
CAMPAIGN_WRITERS = ("admin", "compliance")  # as the API's campaign routes
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _base(request: Request) -> str:
    return request.scope.get("root_path", "")


def _safe_next(request: Request, target: str | None) -> str | None:
    """Only a path inside the console (no scheme, host or //) may follow a login."""
    base = _base(request)
    if target and target.startswith(f"{base}/") and not target.startswith("//") and "\\" not in target \
            and not target.startswith(f"{base}/login"):
        return target
    return None


def routes(console: FastAPI) -> None:
    moderator = staff("moderator", "admin")
    readers = staff(*STAFF_ROLES)
    compliance = staff("compliance")
    campaign_writers = staff(*CAMPAIGN_WRITERS)

    @console.get("/", name="home")
    def home(request: Request) -> Response:
        who = current(request, request.app.state.service.store)
        page = home_of(who.role) if who else "login"
        return RedirectResponse(f"{_base(request)}/{page}", status_code=303)

    @console.get("/login", name="login")
    def login_form(request: Request, next: str | None = None) -> Response:
        return render(request, "login.html", current(request, request.app.state.service.store),
                      next=_safe_next(request, next) or "", error=None)

    @console.post("/login", name="login_post")
    async def login(request: Request, key: Annotated[str, Form(max_length=200)] = "",
                    next: Annotated[str, Form(max_length=500)] = "") -> Response:
        """Check the form's CSRF token and the key; a refused key re-shows the form with why (401 / 403)."""
        await check_csrf(request)
        try:
            who = log_in(request, request.app.state.service.store, key.strip())
        except LoginRequired:
            return render(request, "login.html", None, 401, next=next, error="Unknown or revoked API key.")
        except Forbidden as exc:
            return render(request, "login.html", None, 403, next=next,
                          error=f"A key of role {exc.role!r} cannot use the console; it is for "
                                f"{', '.join(sorted(exc.allowed))} keys.")
        target = _safe_next(request, next) or f"{_base(request)}/{home_of(who.role)}"
        return RedirectResponse(target, status_code=303)

    @console.post("/logout", name="logout")
    async def logout(request: Request) -> Response:
        await check_csrf(request)
        request.session.clear()
        return RedirectResponse(f"{_base(request)}/login", status_code=303)

    @console.get("/accounts", name="accounts")
    def account_search(request: Request, id: str | None = Query(None, max_length=128),
                       who: Staff = Depends(moderator)) -> Response:
        """A form to open an account; with ?id= it goes to that account's page."""
        if id and id.strip():
            return RedirectResponse(f"{_base(request)}/accounts/{quote(id.strip(), safe='')}", status_code=303)
        return render(request, "accounts.html", who)

    @console.get("/accounts/{account_id:path}", name="account")
    def account_page(request: Request, account_id: str, who: Staff = Depends(moderator)) -> Response:
        """State now (measures, strikes, labels), its cases and appeals, and the timeline of decisions and
        changes."""
        service = request.app.state.service
        state = service.store.account_state(account_id)
        if state is None:
            raise HTTPException(404, f"unknown account {account_id!r}")
        at = now_ms()
        history = service.store.account_history(account_id, 100)
        cases = review.list_cases(service.store, service.pack.settings, account=account_id,
                                  status=("open", "escalated", "upheld", "overturned"), limit=100)
        return render(request, "account.html", who, account_id=account_id, state=state, view=state.view(at),
                      at=at, cases=cases, appeals=review.list_appeals(service.store, None, account=account_id),
                      merchant=service.store.merchant(account_id),
                      timeline=timeline(history["changes"], account_decisions(service.store, account_id, 100)))

    @console.get("/rules", name="rules")
    def rules_page(request: Request, days: int | None = Query(None, ge=1, le=3650),
                   who: Staff = Depends(readers)) -> Response:
        """Hits per rule (enforce and shadow) from stored decisions, and precision from moderators' labels."""
        service = request.app.state.service
        since = now_ms() - days * 86_400_000 if days else None
        stats = review.rule_stats(service.store, service.pack, since_ms=since)
        shown = sorted((s for s in stats if s.hits or s.shadow_hits), key=lambda s: -(s.hits + s.shadow_hits))
        chart = bars([(s.rule, s.hits, s.shadow_hits) for s in shown[:25]])
        return render(request, "rules.html", who, stats=stats, chart=chart, days=days, pack=service.pack)

    @console.get("/merchants", name="merchants")
    def merchants_page(request: Request, state: str | None = Query(None, max_length=20),
                       who: Staff = Depends(readers)) -> Response:
        """The merchant registry (S10): every record's state now; compliance staff verify, reject, revoke."""
        if state is not None and state not in merchant_registry.STATES:
            raise HTTPException(422, f"state: one of {', '.join(merchant_registry.STATES)}")
        service = request.app.state.service
        at = now_ms()
        records = [r.to_dict(at) for r in service.store.merchant_list(state or None, at, 500)]
        return render(request, "merchants.html", who, records=records, state=state, states=merchant_registry.STATES,
                      flash=request.session.pop("flash", None))

    @console.post("/merchants/{account_id:path}/{step}", name="merchant_step")
    def merchant_step(request: Request, account_id: str, step: str,
                      reason: Annotated[str, Form(max_length=2000)] = "",
                      licence_expires: Annotated[str, Form(max_length=10)] = "",
                      who: Staff = Depends(compliance)) -> Response:
        """verify / reject / revoke through the store's own registry step (the API's 404/409/422 rules)."""
        if step not in ("verify", "reject", "revoke"):
            raise HTTPException(404, f"no merchant step {step!r}")
        try:
            expires = date.fromisoformat(licence_expires) if licence_expires else None
        except ValueError:
            raise HTTPException(422, "licence_expires: a date YYYY-MM-DD") from None
        store = request.app.state.service.store
        try:
            kwargs = {"licence_expires": expires} if step == "verify" else {"reason": reason}
            done = store.merchant_step(account_id, step, who.actor, **kwargs)
        except merchant_registry.NotFound:
            raise HTTPException(404, f"no merchant record for {account_id!r}") from None
        except merchant_registry.TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        request.session["flash"] = f"{account_id}: {done.record.status}" + ("" if done.changed else " (unchanged)")
        return RedirectResponse(f"{_base(request)}/merchants", status_code=303)

    @console.get("/campaigns", name="campaigns")
    def campaigns_page(request: Request, who: Staff = Depends(readers)) -> Response:
        """Campaign overlays (S12): window, status now, what each overrides, and their history."""
        store = request.app.state.service.store
        at = now_ms()
        campaigns = [{**c, "status": campaign_status(c, at), "history": store.campaign_history(c["name"])}
                     for c in store.campaign_list()]
        return render(request, "campaigns.html", who, campaigns=campaigns, can_end=who.role in CAMPAIGN_WRITERS,
                      flash=request.session.pop("flash", None))

    @console.post("/campaigns/{name}/end", name="end_campaign")
    def end_campaign(request: Request, name: str, who: Staff = Depends(campaign_writers)) -> Response:
        """End a campaign now, through the store's own step (audited, kept in its history)."""
        try:
            _campaign, ended = request.app.state.service.store.campaign_end(name, who.actor)
        except CampaignConflict as exc:
            raise HTTPException(404, str(exc)) from None
        request.session["flash"] = f"Campaign {name}: " + ("ended" if ended else "was already ended")
        return RedirectResponse(f"{_base(request)}/campaigns", status_code=303)

    @console.get("/reports", name="reports")
    def reports_page(request: Request, month: str | None = Query(None, max_length=7),
                     who: Staff = Depends(readers)) -> Response:
        """The transparency report (S11) of a month: the page the core writes (tables, PNG charts) in a frame."""
        service = request.app.state.service
        if month is None:
            month = _this_month(service)
        if not _MONTH.match(month):
            raise HTTPException(422, "month: YYYY-MM")
        return render(request, "reports.html", who, month=month)

    @console.get("/reports/{month}/page", name="report_page")
    def report_standalone(request: Request, month: str, _who: Staff = Depends(readers)) -> Response:
        """The report page exactly as `clearcircle report` writes it (for saving or printing)."""
        if not _MONTH.match(month):
            raise HTTPException(422, "month: YYYY-MM")
        service = request.app.state.service
        page = HTMLResponse(review.transparency_report(service.store, service.pack, month=month).html())
        # the written page carries its own <style>: allow inline styles on this response alone
        page.headers["content-security-policy"] = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                                                   "frame-ancestors 'self'")
        return page


def _this_month(service: Service) -> str:
    """The current month in the platform's time zone."""
    return datetime.fromtimestamp(now_ms() / 1000, service.pack.settings.zone).strftime("%Y-%m")
