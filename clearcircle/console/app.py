"""The console as an ASGI sub-application mounted into the API's FastAPI process at /console.

A sub-application keeps the console's session cookie, CSRF checks, HTML error pages and static files apart from
the JSON API: the API's routes, OpenAPI schema and key-per-request auth are untouched by it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import RedirectResponse, Response

from clearcircle.config import identifier_key
from clearcircle.console import pages, queue
from clearcircle.console.session import (
    COOKIE,
    SESSION_SECONDS,
    CsrfError,
    Forbidden,
    LoginRequired,
    current,
    session_secret,
)
from clearcircle.console.templating import HERE, render
from clearcircle.review import Conflict, NotFound, ReviewError
from clearcircle.service import Service

PREFIX = "/console"
# Pages are server-rendered and load only their own static files: nothing else may run, frame or be fetched.
_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def build_console(service: Service, https_only: bool = False) -> FastAPI:
    """The console application for this service (its own routes, session middleware and error pages).
    `https_only` marks the session cookie Secure (a deployment behind HTTPS); the embedded default is plain HTTP."""
    console = FastAPI(title="ClearCircle console", openapi_url=None, docs_url=None, redoc_url=None)
    console.state.service = service

    @console.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            if name != "cache-control" or not request.url.path.startswith(f"{PREFIX}/static/"):
                response.headers.setdefault(name, value)
        return response

    console.add_middleware(SessionMiddleware, secret_key=session_secret(identifier_key(service.settings)),
                           session_cookie=COOKIE, max_age=SESSION_SECONDS, path=PREFIX, same_site="strict",
                           https_only=https_only)
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _error_pages(console)
    pages.routes(console)
    queue.routes(console)
    return console


def mount(app: FastAPI, service: Service, https_only: bool = False) -> None:
    """Serve the console from the API's process at /console (one call in api.app.create_app)."""
    app.mount(PREFIX, build_console(service, https_only), name="console")


def _login_redirect(request: Request) -> Response:
    base = request.scope.get("root_path", "")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"{base}/login" + (f"?next={target}" if request.method == "GET" else "")
    if request.headers.get("hx-request"):  # htmx follows HX-Redirect with a full page load
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _error_pages(console: FastAPI) -> None:
    """Every refusal is an HTML page (or an htmx fragment) with the right status, never a traceback."""

    def page(request: Request, status: int, title: str, message: str) -> Response:
        staff = current(request, request.app.state.service.store)
        if request.headers.get("hx-request"):  # shown in the page's message area, whatever the request targeted
            fragment = render(request, "_error_fragment.html", staff, status_code=status, title=title,
                              message=message)
            fragment.headers.update({"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"})
            return fragment
        return render(request, "error.html", staff, status_code=status, title=title, message=message)

    @console.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        return _login_redirect(request)

    @console.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return page(request, 403, "Not for your role", str(exc))

    @console.exception_handler(CsrfError)
    async def _csrf(request: Request, exc: CsrfError) -> Response:
        return page(request, 403, "Form expired", str(exc))

    @console.exception_handler(ReviewError)
    async def _review(request: Request, exc: ReviewError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
        return page(request, status, {404: "Not found", 409: "Conflict", 422: "Cannot do that"}[status], str(exc))

    @console.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return page(request, 422, "Invalid input", problems)

    @console.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return page(request, exc.status_code, "Not found" if exc.status_code == 404 else "Error", str(exc.detail))


def page_roles(console: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    """(method, path) -> the roles each console route admits, read off its `staff(...)` dependency; routes
    without one (login, logout, the home redirect) are open and map to an empty set."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for route in console.routes:
        if not isinstance(route, APIRoute):
            continue
        roles: set[str] = set()
        for dep in route.dependant.dependencies:
            roles |= set(getattr(dep.call, "allowed_roles", ()))
        for method in route.methods:
            out[(method, route.path)] = frozenset(roles)
    return out
