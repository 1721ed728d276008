"""The console's Jinja2 environment: templates beside this file, autoescaped, with the filters pages share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from clearcircle.console.session import CSRF_FIELD, Staff, csrf_token
from clearcircle.console.views import fmt_age, fmt_ms

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["age"] = fmt_age
templates.env.filters["when"] = fmt_ms
templates.env.filters["json"] = lambda value: orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()

# The navigation bar: (page, label, roles that see it). Each route's own dependency is what enforces a role;
# this only hides the links a role would be refused.
NAV = (
    ("queue", "Queue", frozenset({"moderator", "admin"})),
    ("accounts", "Accounts", frozenset({"moderator", "admin"})),
    ("rules", "Rules", frozenset({"moderator", "admin", "compliance"})),
    ("merchants", "Merchants", frozenset({"moderator", "admin", "compliance"})),
    ("campaigns", "Campaigns", frozenset({"moderator", "admin", "compliance"})),
    ("reports", "Reports", frozenset({"moderator", "admin", "compliance"})),
)


def home_of(role: str) -> str:
    """The first page a role sees after logging in."""
    return "queue" if role in ("moderator", "admin") else "merchants"


def render(request: Request, name: str, staff: Staff | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with what every page needs: the person, the CSRF token, the navigation and the zone."""
    service = request.app.state.service
    return templates.TemplateResponse(request, name, {
        "staff": staff, "csrf": csrf_token(request), "csrf_field": CSRF_FIELD,
        "base": request.scope.get("root_path", ""),
        "nav": [(page, label) for page, label, roles in NAV if staff is not None and staff.role in roles],
        "zone": service.pack.settings.zone, **context}, status_code=status_code)
